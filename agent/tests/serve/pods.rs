//! Pod and container verbs answered without containers: validation, idempotent
//! teardown of unknown ids, and the streaming verbs' answers for objects that do not
//! exist.

use anyhow::{Context, Result};
use berth_proto::cri::v1::*;
use tonic::Code;

use crate::world::{stop_and_remove_container, stop_and_remove_pod};
use crate::Home;

/// A pod config valid in every field kubelet must fill in.
fn pod_config(name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("{name}-uid"),
            namespace: "default".into(),
            attempt: 0,
        }),
        linux: Some(LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

/// A random-looking id nothing on a fresh node has.
const UNKNOWN_ID: &str = "4c1e2f3a-9b8d-4e7f-a6c5-0d1e2f3a4b5c";

#[tokio::test]
async fn bad_pod_requests_are_refused_and_leave_nothing() -> Result<()> {
    let home = Home::new("")?;
    let berth = home.start().await?;
    let mut client = berth.runtime().await?;

    let missing = client
        .run_pod_sandbox(RunPodSandboxRequest::default())
        .await
        .expect_err("a pod without a config ran");
    assert_eq!(missing.code(), Code::InvalidArgument, "{missing:?}");
    assert!(
        missing.message().starts_with("RunPodSandbox: "),
        "{missing:?}"
    );

    let mut unnamed = pod_config("web");
    unnamed.metadata.as_mut().context("metadata")?.uid.clear();
    let status = client
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(unnamed),
            runtime_handler: String::new(),
        })
        .await
        .expect_err("a pod without a uid ran");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("metadata.uid"), "{status:?}");

    // A runtime handler this node does not serve is refused before any backend runs.
    let status = client
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_config("web")),
            runtime_handler: "no-such-handler".into(),
        })
        .await
        .expect_err("an unknown handler ran");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("no-such-handler"), "{status:?}");

    let pods = client
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await?
        .into_inner();
    assert!(pods.items.is_empty(), "{pods:?}");
    let containers = client
        .list_containers(ListContainersRequest::default())
        .await?
        .into_inner();
    assert!(containers.containers.is_empty(), "{containers:?}");
    let stats = client
        .list_container_stats(ListContainerStatsRequest::default())
        .await?
        .into_inner();
    assert!(stats.stats.is_empty());
    let pod_stats = client
        .list_pod_sandbox_stats(ListPodSandboxStatsRequest::default())
        .await?
        .into_inner();
    assert!(pod_stats.stats.is_empty());

    let create = client
        .create_container(CreateContainerRequest {
            pod_sandbox_id: UNKNOWN_ID.into(),
            ..Default::default()
        })
        .await
        .expect_err("a container in no pod was created");
    assert_eq!(create.code(), Code::NotFound, "{create:?}");
    assert!(create.message().contains(UNKNOWN_ID), "{create:?}");
    Ok(())
}

/// critest's Idempotence specs: stopping and removing what does not exist succeeds;
/// asking about it is NotFound.
#[tokio::test]
async fn teardown_of_unknown_ids_succeeds_and_status_is_not_found() -> Result<()> {
    let home = Home::new("")?;
    let berth = home.start().await?;
    let mut client = berth.runtime().await?;
    let id = UNKNOWN_ID.to_string();
    stop_and_remove_pod(&mut client, &id).await?;
    stop_and_remove_container(&mut client, &id).await?;
    let answers = [
        client
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: true,
            })
            .await
            .map(drop),
        client
            .container_status(ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false,
            })
            .await
            .map(drop),
        client
            .exec_sync(ExecSyncRequest {
                container_id: id.clone(),
                cmd: vec!["true".into()],
                timeout: 1,
            })
            .await
            .map(drop),
        client
            .container_stats(ContainerStatsRequest {
                container_id: id.clone(),
            })
            .await
            .map(drop),
    ];
    for answer in answers {
        let status = answer.expect_err("an unknown object answered");
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert!(status.message().contains(&id), "{status:?}");
    }
    Ok(())
}

#[tokio::test]
async fn streaming_verbs_refuse_unknown_and_missing_ids() -> Result<()> {
    let home = Home::new("")?;
    let berth = home.start().await?;
    let mut client = berth.runtime().await?;
    let exec = ExecRequest {
        container_id: UNKNOWN_ID.into(),
        cmd: vec!["sh".into()],
        stdout: true,
        ..Default::default()
    };
    let attach = AttachRequest {
        container_id: UNKNOWN_ID.into(),
        stdout: true,
        ..Default::default()
    };
    let forward = PortForwardRequest {
        pod_sandbox_id: UNKNOWN_ID.into(),
        port: vec![80],
    };
    let answers = [
        client.exec(exec).await.map(drop),
        client.attach(attach).await.map(drop),
        client.port_forward(forward).await.map(drop),
    ];
    for answer in answers {
        let status = answer.expect_err("a streaming verb answered for nothing");
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert!(status.message().contains(UNKNOWN_ID), "{status:?}");
    }
    let empty = client
        .exec(ExecRequest::default())
        .await
        .expect_err("an exec without a container answered");
    assert_eq!(empty.code(), Code::InvalidArgument, "{empty:?}");
    Ok(())
}
