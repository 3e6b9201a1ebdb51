//! Bad container requests against a running pod get a clear gRPC error naming what is
//! wrong, and leave nothing half-made: berth lists what it listed before and the host
//! holds what it held before.

use anyhow::Result;
use berth_proto::cri::v1::*;
use tonic::Code;

use crate::world::{create, list_containers, list_pods, run_pod, Client, World};

/// A random-looking id nothing on a fresh node has.
const UNKNOWN_ID: &str = "8d0f6c1e2b3a49587a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f";

/// What berth lists, sorted, to compare before and after a refused request.
async fn listing(client: &mut Client) -> Result<(Vec<String>, Vec<String>)> {
    let mut pods: Vec<String> = list_pods(client).await?.into_iter().map(|p| p.id).collect();
    let mut containers: Vec<String> = list_containers(client)
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect();
    pods.sort();
    containers.sort();
    Ok((pods, containers))
}

/// Asserts `answer` failed with `code` and a message containing every one of `names`.
fn assert_refused<T: std::fmt::Debug>(
    what: &str,
    answer: Result<T, tonic::Status>,
    code: Code,
    names: &[&str],
) {
    let status = match answer {
        Ok(value) => panic!("{what}: accepted, answered {value:?}"),
        Err(status) => status,
    };
    assert_eq!(status.code(), code, "{what}: {status:?}");
    for name in names {
        assert!(
            status.message().contains(name),
            "{what}: the message does not name {name}: {status:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_container_requests_are_refused_clearly_and_leave_nothing() -> Result<()> {
    let world = World::new().await?;
    let berth = world.start().await?;
    let mut client = berth.runtime().await?;
    let pod_config = world.pod("errors", &[]);
    let pod = run_pod(&mut client, &pod_config).await?;
    let app = world.container("app", &["sleep", "1000"]);
    let first = create(&mut client, &pod, &pod_config, &app).await?;
    let listed = listing(&mut client).await?;
    let held = world.host();

    // The pod id names no pod.
    let answer = create(
        &mut client,
        UNKNOWN_ID,
        &pod_config,
        &world.container("x", &["true"]),
    )
    .await;
    assert_refused("an unknown pod", answer, Code::NotFound, &[UNKNOWN_ID]);
    let answer = client
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: UNKNOWN_ID.into(),
            verbose: false,
        })
        .await;
    assert_refused(
        "status of an unknown pod",
        answer,
        Code::NotFound,
        &[UNKNOWN_ID],
    );
    let answer = client
        .start_container(StartContainerRequest {
            container_id: UNKNOWN_ID.into(),
        })
        .await;
    assert_refused(
        "start of an unknown container",
        answer,
        Code::NotFound,
        &[UNKNOWN_ID],
    );

    // A mount whose host path does not exist.
    let missing = world.dir().join("no-such-dir/data");
    let mut config = world.container("mounter", &["true"]);
    config.mounts.push(Mount {
        container_path: "/data".into(),
        host_path: missing.display().to_string(),
        ..Default::default()
    });
    let answer = create(&mut client, &pod, &pod_config, &config).await;
    let path = missing.display().to_string();
    assert_refused(
        "a missing host path",
        answer,
        Code::InvalidArgument,
        &[&path, "/data"],
    );
    assert!(!missing.exists(), "the missing host path was created");

    // An image never pulled.
    let image = "127.0.0.1:1/never/pulled:1";
    let mut config = world.container("unpulled", &["true"]);
    config.image = Some(ImageSpec {
        image: image.into(),
        ..Default::default()
    });
    let answer = create(&mut client, &pod, &pod_config, &config).await;
    assert_refused("an image not pulled", answer, Code::NotFound, &[image]);

    // A negative memory limit.
    let mut config = world.container("negative", &["true"]);
    config.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: -1024,
            ..Default::default()
        }),
        ..Default::default()
    });
    let answer = create(&mut client, &pod, &pod_config, &config).await;
    assert_refused(
        "a negative memory limit",
        answer,
        Code::InvalidArgument,
        &["memory", "-1024"],
    );

    // A second container of the same name (and attempt) in the pod.
    let answer = create(&mut client, &pod, &pod_config, &app).await;
    assert_refused(
        "a duplicate name",
        answer,
        Code::AlreadyExists,
        &["app", &first],
    );

    assert_eq!(listing(&mut client).await?, listed);
    assert_eq!(world.host(), held);
    // The pod is unharmed: the name refused above is free again once its holder goes.
    client
        .remove_container(RemoveContainerRequest {
            container_id: first,
        })
        .await?;
    create(&mut client, &pod, &pod_config, &app).await?;
    crate::world::remove_all_pods(&mut client).await?;
    Ok(())
}
