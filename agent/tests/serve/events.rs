//! `GetContainerEvents` on real pods: a gRPC subscriber and `crictl events` both see
//! each lifecycle step, in order, with the pod's status, and a container's own exit.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use berth_proto::cri::v1::*;
use futures::StreamExt;
use tokio::io::AsyncReadExt;

use crate::world::{
    create_and_start, run_pod, stop_and_remove_container, stop_and_remove_pod, World,
};

#[tokio::test]
async fn a_grpc_subscriber_and_crictl_events_see_each_step() -> Result<()> {
    let world = World::new().await?;
    let berth = world.start().await?;
    let mut client = berth.runtime().await?;
    // Subscribed once the answer's headers are back.
    let mut events = client
        .get_container_events(GetEventsRequest {})
        .await?
        .into_inner();
    let crictl = berth_testkit::crictl::Crictl::new(world.home.dir.path(), &world.home.socket());
    let mut watcher = crictl
        .command(&["events", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    // crictl has no sign of having subscribed; it connects in milliseconds.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let pod_config = world.pod("evented", &[]);
    let pod = run_pod(&mut client, &pod_config).await?;
    let app = world.container("app", &["sleep", "60"]);
    let id = create_and_start(&mut client, &pod, &pod_config, &app).await?;
    stop_and_remove_container(&mut client, &id).await?;
    stop_and_remove_pod(&mut client, &pod).await?;

    use ContainerEventType::*;
    let want = [
        (ContainerCreatedEvent, &pod),
        (ContainerStartedEvent, &pod),
        (ContainerCreatedEvent, &id),
        (ContainerStartedEvent, &id),
        (ContainerStoppedEvent, &id),
        (ContainerDeletedEvent, &id),
        (ContainerStoppedEvent, &pod),
        (ContainerDeletedEvent, &pod),
    ];
    let mut got = Vec::new();
    for _ in want {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .context("no event within 10 s")?
            .context("the stream ended")??;
        got.push(event);
    }
    let seen: Vec<_> = got
        .iter()
        .map(|e| (e.container_event_type(), &e.container_id))
        .collect();
    assert_eq!(seen, want);
    let started = &got[3];
    let status = started
        .pod_sandbox_status
        .as_ref()
        .context("no pod status")?;
    assert_eq!(status.state(), PodSandboxState::SandboxReady);
    assert_eq!(
        started.containers_statuses[0].state(),
        ContainerState::ContainerRunning
    );
    assert_eq!(
        got[4].containers_statuses[0].state(),
        ContainerState::ContainerExited
    );

    // crictl printed the same steps of the container.
    let mut out = watcher.stdout.take().context("no stdout")?;
    let mut text = String::new();
    let mut buf = [0u8; 65536];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !text.contains("CONTAINER_DELETED_EVENT") || text.matches(&id).count() < 4 {
        let n = tokio::time::timeout_at(deadline, out.read(&mut buf))
            .await
            .with_context(|| format!("crictl events printed only:\n{text}"))??;
        anyhow::ensure!(n > 0, "crictl events ended:\n{text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let objects: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&text)
        .into_iter()
        .collect::<Result<_, _>>()
        .with_context(|| format!("not JSON objects:\n{text}"))?;
    let of_app: Vec<&str> = objects
        .iter()
        .filter(|o| o["containerId"] == id.as_str())
        .filter_map(|o| o["containerEventType"].as_str())
        .collect();
    assert_eq!(
        of_app,
        [
            "CONTAINER_CREATED_EVENT",
            "CONTAINER_STARTED_EVENT",
            "CONTAINER_STOPPED_EVENT",
            "CONTAINER_DELETED_EVENT"
        ],
        "{text}"
    );
    watcher.kill().await?;

    // A container that exits by itself is a stop event, nobody asking about it.
    let pod = run_pod(&mut client, &pod_config).await?;
    let quitter = world.container("quitter", &["sh", "-c", "sleep 1; exit 3"]);
    let id = create_and_start(&mut client, &pod, &pod_config, &quitter).await?;
    let stopped = loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .context("no stop event within 10 s of the exit")?
            .context("the stream ended")??;
        if event.container_event_type() == ContainerStoppedEvent && event.container_id == id {
            break event;
        }
    };
    let status = stopped
        .containers_statuses
        .iter()
        .find(|c| c.id == id)
        .context("no status of the container")?;
    assert_eq!(status.exit_code, 3, "{status:?}");
    stop_and_remove_pod(&mut client, &pod).await?;
    Ok(())
}
