//! Removal: every name of the image goes, content no other image uses goes, shared
//! layers stay, and removing twice (or something never pulled) succeeds.

use berth_testkit::images::{image, layer, noise, push, OCI_MANIFEST};
use berth_testkit::servers::Registry;

use crate::{names, open_insecure, req};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_keeps_shared_layers_and_drops_the_rest() {
    let registry = Registry::start().await;
    let base = layer(&[("base", &noise(4096, 3))]);
    let a = image(
        vec![base.clone(), layer(&[("a", b"a")])],
        crate::host_arch(),
        &["a"],
        OCI_MANIFEST,
    );
    let b = image(
        vec![base.clone(), layer(&[("b", b"b")])],
        crate::host_arch(),
        &["b"],
        OCI_MANIFEST,
    );
    push(&registry.addr, "rm/a", "1", &a).await;
    push(&registry.addr, "rm/a", "2", &a).await;
    push(&registry.addr, "rm/b", "1", &b).await;
    let tmp = tempfile::tempdir().unwrap();
    let store = open_insecure(tmp.path(), &[&registry.addr]);
    let (ra, rb) = (
        format!("{}/rm/a:1", registry.addr),
        format!("{}/rm/b:1", registry.addr),
    );
    store.pull(&req(&ra)).await.unwrap();
    store
        .pull(&req(&format!("{}/rm/a:2", registry.addr)))
        .await
        .unwrap();
    store.pull(&req(&rb)).await.unwrap();
    let a_dirs = store.layer_dirs(&ra).unwrap();
    let b_dirs = store.layer_dirs(&rb).unwrap();
    assert_eq!(a_dirs[1], b_dirs[1], "the base layer is one directory");
    let usage_before = store.fs_info().unwrap();

    store.remove(&ra).unwrap();
    assert!(store.status(&ra).unwrap().is_none());
    assert!(
        store
            .status(&format!("{}/rm/a:2", registry.addr))
            .unwrap()
            .is_none(),
        "every tag of the image goes with it"
    );
    assert!(store.status(&a.config_digest).unwrap().is_none());
    assert!(!a_dirs[0].exists(), "a's own layer is gone");
    assert!(
        b_dirs.iter().all(|d| d.exists()),
        "b's layers (and the shared base) stay"
    );
    let blobs = names(&tmp.path().join("blobs/sha256"));
    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
    assert!(!blobs.contains(&hex(&a.config_digest)) && !blobs.contains(&hex(&a.manifest_digest)));
    assert!(blobs.contains(&hex(&b.config_digest)) && blobs.contains(&hex(&b.manifest_digest)));
    assert_eq!(
        std::fs::read(b_dirs[1].join("base")).unwrap(),
        noise(4096, 3)
    );
    assert!(store.fs_info().unwrap().used_bytes < usage_before.used_bytes);

    store.remove(&ra).unwrap();
    store.remove("never/pulled:1").unwrap();
    assert_eq!(store.list().unwrap().len(), 1);

    // By repo digest, the last image: nothing is left.
    store
        .remove(&format!("{}/rm/b@{}", registry.addr, b.manifest_digest))
        .unwrap();
    assert!(store.list().unwrap().is_empty());
    crate::assert_empty(tmp.path());
}
