//! Sessions live in the agent; containers in their supervisors. When berth dies, its
//! exec'd processes die with their sessions and attached clients are detached; the
//! containers keep running, and a new berth execs into them again.

use std::time::Duration;

use anyhow::{Context, Result};
use berth_proto::cri::v1::ContainerState;

use super::{
    children, eventually, fds_and_threads, processes, Ctr, Node, PtyClient, SLEEPER, WAIT,
};

#[tokio::test]
async fn sessions_die_with_berth_and_the_containers_keep_running() -> Result<()> {
    let mut node = Node::start().await?;
    let shell = Ctr {
        name: "sh",
        command: &["sh"],
        stdin: true,
        ..Default::default()
    };
    let (pod, sh) = node.pod_with("restart", &shell).await?;
    let app = node.run(&pod, "restart", &SLEEPER).await?;
    let supervisor = *node.supervisors().first().context("no supervisor")?;
    let idle = (fds_and_threads(supervisor), children(supervisor));

    let marker = "sleep 4242";
    let exec = node
        .crictl
        .command(&["exec", &app, "sh", "-c", marker])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let attach = PtyClient::spawn(node.crictl.command(&["attach", "-i", &sh]), 24, 80);
    let started = eventually(WAIT, || {
        processes().iter().any(|(_, c)| c.trim_end() == marker)
    })
    .await;
    assert!(started, "the exec never started");
    // Wait for the attach to be live: the supervisor holds one more connection.
    let attached = eventually(WAIT, || fds_and_threads(supervisor).0 > idle.0 .0 + 1).await;
    assert!(attached, "the attach never reached the supervisor");

    node.berth.kill9().await?;
    let ended = eventually(WAIT, || {
        !processes().iter().any(|(_, c)| c.trim_end() == marker)
    })
    .await;
    assert!(ended, "the exec'd process outlived berth");
    // The supervisor is back to its idle self: sessions closed, clients detached.
    let settled = eventually(WAIT, || {
        (fds_and_threads(supervisor), children(supervisor)) == idle
    })
    .await;
    assert!(
        settled,
        "supervisor {:?} {:?}, idle {idle:?}",
        fds_and_threads(supervisor),
        children(supervisor)
    );
    drop((exec, attach));

    node.berth = node.world.home.start_as("berth-again").await?;
    node.client = node.berth.runtime().await?;
    for id in [&sh, &app] {
        assert_eq!(node.state(id).await?, ContainerState::ContainerRunning);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let run = node.crictl.run(&["exec", &app, "echo", "back"], None).await;
    assert_eq!(run.stdout, "back\n", "{}", run.stderr);
    Ok(())
}
