//! Crash safety: a pull killed with SIGKILL mid-download, a pull whose caller gave
//! up, and leftovers planted on disk. Nothing half-done is ever visible, `open`
//! cleans up, and the next pull completes.

use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use berth_testkit::images::{image, layer, noise, push, Image, OCI_MANIFEST};
use berth_testkit::servers::{FakeContent, FakeRegistry, Proxied, Registry};

use crate::{assert_empty, names, open_insecure, req};

const CHILD_ENV: &str = "BERTH_IMAGE_CRASH_CHILD";

fn big_image(seed: u64) -> Image {
    let big = layer(&[("big.bin", &noise(512 * 1024, seed))]);
    image(
        vec![layer(&[("small", b"s")]), big],
        crate::host_arch(),
        &["x"],
        OCI_MANIFEST,
    )
}

/// Waits until the big layer's unpack in `root/tmp` has written some of `big.bin`
/// (the layer streams in as it downloads).
async fn wait_for_partial_unpack(root: &std::path::Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for name in names(&root.join("tmp")) {
            let len = std::fs::metadata(root.join("tmp").join(&name).join("big.bin"))
                .map(|m| m.len())
                .unwrap_or(0);
            if name.starts_with("unpack-") && len > 0 {
                return name;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no unpack started in {}",
            root.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The child half of `a_killed_pull_leaves_nothing_visible`: pulls until killed.
/// Ignored (the testkit's policy: no test passes by doing nothing); the parent runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of a_killed_pull_leaves_nothing_visible"]
async fn crash_child() {
    let spec = std::env::var(CHILD_ENV)
        .expect("run by a_killed_pull_leaves_nothing_visible, which sets the environment");
    let (root, addr) = spec.split_once(' ').unwrap();
    let store = open_insecure(std::path::Path::new(root), &[addr]);
    let result = store.pull(&req(&format!("{addr}/crash/app:1"))).await;
    panic!("the parent should have killed this pull, it ended with {result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_pull_leaves_nothing_visible() {
    crate::require_root();
    let img = big_image(11);
    let fake = FakeRegistry::start(FakeContent::default().with_image("1", &img)).await;
    fake.delay_ms.store(20, Ordering::Relaxed);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crash::crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{} {}", root.display(), fake.addr))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let partial = wait_for_partial_unpack(&root).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    assert!(
        root.join("tmp").join(&partial).exists(),
        "the kill left a partial unpack behind"
    );

    fake.delay_ms.store(0, Ordering::Relaxed);
    let store = open_insecure(&root, &[&fake.addr]);
    assert!(
        store.list().unwrap().is_empty(),
        "nothing of the killed pull is visible"
    );
    assert_empty(&root);
    let info = store
        .pull(&req(&format!("{}/crash/app:1", fake.addr)))
        .await
        .unwrap();
    assert_eq!(info.id, img.config_digest);
    let dirs = store.layer_dirs(&info.id).unwrap();
    assert_eq!(
        std::fs::read(dirs[0].join("big.bin")).unwrap(),
        noise(512 * 1024, 11)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_whose_caller_gave_up_finishes_and_the_retry_joins_it() {
    let img = big_image(12);
    let served = Proxied::start("slow/app", "1", &img, 10).await;
    let (proxy, reference) = (&served.proxy, &served.reference);
    let tmp = tempfile::tempdir().unwrap();
    let store = open_insecure(tmp.path(), &[&proxy.addr]);
    let deadline = tokio::time::timeout(Duration::from_secs(60), async {
        let request = req(reference);
        let pull = store.pull(&request);
        tokio::select! {
            _ = pull => panic!("the pull should still be running"),
            _ = wait_for_partial_unpack(tmp.path()) => {}
        }
    });
    deadline.await.unwrap();
    assert!(
        store.status(reference).unwrap().is_none(),
        "not visible before its commit"
    );
    proxy.delay_ms.store(0, Ordering::Relaxed);
    let info = store.pull(&req(reference)).await.unwrap();
    assert_eq!(info.id, img.config_digest);
    assert_eq!(
        proxy.blob_gets(&img.layers[1].digest),
        1,
        "{:?}",
        proxy.requests()
    );
    assert_eq!(names(&tmp.path().join("tmp")), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_removes_leftovers_and_images_with_missing_layers() {
    let registry = Registry::start().await;
    let keep = image(
        vec![layer(&[("k", b"k")])],
        crate::host_arch(),
        &["k"],
        OCI_MANIFEST,
    );
    let lose = image(
        vec![layer(&[("l", b"l")])],
        crate::host_arch(),
        &["l"],
        OCI_MANIFEST,
    );
    push(&registry.addr, "left/keep", "1", &keep).await;
    push(&registry.addr, "left/lose", "1", &lose).await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (rk, rl) = (
        format!("{}/left/keep:1", registry.addr),
        format!("{}/left/lose:1", registry.addr),
    );
    {
        let store = open_insecure(root, &[&registry.addr]);
        store.pull(&req(&rk)).await.unwrap();
        store.pull(&req(&rl)).await.unwrap();
        // A crash after renames but before the index commit, and mid-unpack.
        std::fs::write(root.join("tmp/download-x"), b"partial").unwrap();
        std::fs::create_dir_all(root.join("tmp/unpack-y/usr/bin")).unwrap();
        std::fs::write(root.join("blobs/sha256").join("ab".repeat(32)), b"orphan").unwrap();
        std::fs::create_dir_all(root.join("layers").join("cd".repeat(32)).join("etc")).unwrap();
        // And a layer that vanished from under an image.
        std::fs::remove_dir_all(&store.layer_dirs(&rl).unwrap()[0]).unwrap();
    }
    let store = open_insecure(root, &[&registry.addr]);
    assert_eq!(names(&root.join("tmp")), Vec::<String>::new());
    assert!(!root.join("blobs/sha256").join("ab".repeat(32)).exists());
    assert!(!root.join("layers").join("cd".repeat(32)).exists());
    assert!(
        store.status(&rl).unwrap().is_none(),
        "an image missing a layer is dropped"
    );
    let kept = store.layer_dirs(&rk).unwrap();
    assert_eq!(std::fs::read(kept[0].join("k")).unwrap(), b"k");
    assert_eq!(names(&root.join("layers")).len(), 1);
    // The dropped image pulls again.
    assert_eq!(store.pull(&req(&rl)).await.unwrap().id, lose.config_digest);
}
