//! The youki backend serves the image verbs of the `Runtime` trait from the store.

use std::sync::Arc;

use berth_testkit::images::{image, layer, push, DOCKER_MANIFEST};
use berth_testkit::servers::Registry;
use runtimes::youki::YoukiRuntime;
use runtimes::{Error, Runtime};

use crate::{open_insecure, req};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn youki_serves_images_through_the_runtime_trait() {
    let registry = Registry::start().await;
    let img = image(
        vec![layer(&[("y", b"y")])],
        crate::host_arch(),
        &["y"],
        DOCKER_MANIFEST,
    );
    let foreign = image(
        vec![layer(&[("z", b"z")])],
        "riscv64",
        &["z"],
        DOCKER_MANIFEST,
    );
    push(&registry.addr, "youki/app", "1", &img).await;
    push(&registry.addr, "youki/foreign", "1", &foreign).await;
    let tmp = tempfile::tempdir().unwrap();
    let runtime = YoukiRuntime::new(Arc::new(open_insecure(tmp.path(), &[&registry.addr])));
    assert_eq!(runtime.name(), "youki");
    assert!(runtime.runs_os("linux") && !runtime.runs_os("windows"));

    let reference = format!("{}/youki/app:1", registry.addr);
    let pulled = runtime.pull_image(&req(&reference)).await.unwrap();
    assert_eq!(
        runtime.image_status(&reference).await.unwrap(),
        Some(pulled.clone())
    );
    assert_eq!(runtime.list_images().await.unwrap(), vec![pulled]);
    let usage = runtime.image_fs_info().await.unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].mountpoint, tmp.path());
    match runtime
        .pull_image(&req(&format!("{}/youki/foreign:1", registry.addr)))
        .await
    {
        Err(Error::WrongPlatform {
            backend, platform, ..
        }) => {
            assert_eq!(
                (backend.as_str(), platform.as_str()),
                ("youki", "linux/riscv64")
            );
        }
        other => panic!("{other:?}"),
    }
    runtime.remove_image(&reference).await.unwrap();
    runtime.remove_image(&reference).await.unwrap();
    assert!(runtime.image_status(&reference).await.unwrap().is_none());
    assert!(matches!(
        runtime
            .run_pod_sandbox(
                &runtimes::ContainerId::new("svc", "main", 0, "node").unwrap(),
                &Default::default()
            )
            .await,
        Err(Error::Unsupported { .. })
    ));
}
