//! The backend serves the image verbs of the `Runtime` trait from its image store.

use berth_testkit::images::{image, layer, push, DOCKER_MANIFEST};
use runtimes::types::PullRequest;
use runtimes::{Error, Runtime};

use crate::Env;

fn req(reference: &str) -> PullRequest {
    PullRequest {
        reference: reference.to_string(),
        auth: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_served_through_the_runtime_trait() {
    let env = Env::new().await;
    let (runtime, busybox) = env.open().await;
    assert_eq!(runtime.name(), "youki");
    assert!(runtime.runs_os("linux") && !runtime.runs_os("windows"));
    let foreign = image(
        vec![layer(&[("z", b"z")])],
        "riscv64",
        &["z"],
        DOCKER_MANIFEST,
    );
    push(&env.registry_addr, "youki/foreign", "1", &foreign).await;

    assert_eq!(
        runtime.image_status(&env.image).await.unwrap(),
        Some(busybox.clone())
    );
    assert_eq!(runtime.list_images().await.unwrap(), vec![busybox]);
    let usage = runtime.image_fs_info().await.unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0].mountpoint, env.state_dir().join("images"));
    match runtime
        .pull_image(&req(&format!("{}/youki/foreign:1", env.registry_addr)))
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
    runtime.remove_image(&env.image).await.unwrap();
    runtime.remove_image(&env.image).await.unwrap();
    assert!(runtime.image_status(&env.image).await.unwrap().is_none());
    drop(runtime);
    env.assert_clean();
}
