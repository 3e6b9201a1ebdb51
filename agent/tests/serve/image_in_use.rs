//! An image a container uses is not removed from under it: `RemoveImage` of the
//! image of a running or exited container is refused (`FailedPrecondition`, naming
//! the container), its layers stay on disk and the container keeps working; once
//! its last container is removed, the image is removed, layers and all.

use anyhow::Result;
use berth_proto::cri::v1::{ExecSyncResponse, RemoveContainerRequest, RemoveImageRequest};
use tonic::Code;

use crate::world::{create_and_start, exec, run_pod, stop_and_remove_pod, wait_exited, World};
use crate::{pull, spec, status};

#[tokio::test]
async fn a_used_image_outlives_removal_attempts_until_its_containers_go() -> Result<()> {
    let world = World::new().await?;
    let berth = world.start().await?;
    let mut client = berth.runtime().await?;
    let mut images = berth.images().await?;
    let id = pull(&mut images, &world.image).await?;
    let layers_dir = world.home.images_root().join("layers");
    let layers = berth_testkit::names(&layers_dir);
    assert!(!layers.is_empty());

    let pod_config = world.pod("users", &[]);
    let pod = run_pod(&mut client, &pod_config).await?;
    let app = create_and_start(
        &mut client,
        &pod,
        &pod_config,
        &world.container("app", &["sleep", "600"]),
    )
    .await?;
    let done = create_and_start(
        &mut client,
        &pod,
        &pod_config,
        &world.container("done", &["true"]),
    )
    .await?;
    wait_exited(&mut client, &done, std::time::Duration::from_secs(10)).await?;

    for name in [world.image.as_str(), id.as_str()] {
        let refused = images
            .remove_image(RemoveImageRequest { image: spec(name) })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert!(
            refused.message().contains("in use by container app")
                || refused.message().contains("in use by container done"),
            "{refused:?}"
        );
    }
    assert!(status(&mut images, &world.image).await?.is_some());
    assert_eq!(berth_testkit::names(&layers_dir), layers);
    let out: ExecSyncResponse = exec(&mut client, &app, &["ls", "/bin/sh"]).await?;
    assert_eq!(
        (out.exit_code, out.stdout.as_slice()),
        (0, &b"/bin/sh\n"[..])
    );

    // The exited container alone still holds it.
    client
        .stop_container(berth_proto::cri::v1::StopContainerRequest {
            container_id: app.clone(),
            timeout: 0,
        })
        .await?;
    client
        .remove_container(RemoveContainerRequest { container_id: app })
        .await?;
    let refused = images
        .remove_image(RemoveImageRequest {
            image: spec(&world.image),
        })
        .await
        .unwrap_err();
    assert!(
        refused.message().contains("in use by container done"),
        "{refused:?}"
    );
    assert_eq!(berth_testkit::names(&layers_dir), layers);

    client
        .remove_container(RemoveContainerRequest { container_id: done })
        .await?;
    images
        .remove_image(RemoveImageRequest {
            image: spec(&world.image),
        })
        .await?;
    assert!(status(&mut images, &world.image).await?.is_none());
    assert!(berth_testkit::names(&layers_dir).is_empty());
    stop_and_remove_pod(&mut client, &pod).await?;
    Ok(())
}
