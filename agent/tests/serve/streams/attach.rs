//! `crictl attach`: several clients see the container's output and share its stdin;
//! detaching leaves it running; `stdin_once` closes stdin when the first client
//! closes its own; a terminal container is attached on its terminal.

use std::time::Duration;

use anyhow::Result;
use berth_proto::cri::v1::ContainerState;

use super::{Ctr, Node, PtyClient, TRANSPORTS, WAIT};

/// Types `command` into `client` until `watcher` printed `needle` (an attach is only
/// live once crictl connected, which it does not announce).
async fn until_seen(client: &mut PtyClient, watcher: &PtyClient, command: &str, needle: &str) {
    for _ in 0..100 {
        client.type_text(command).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        if watcher.output().contains(needle) {
            return;
        }
    }
    panic!("{needle:?} never showed: {:?}", watcher.output());
}

#[tokio::test]
async fn attached_clients_share_output_and_stdin_and_detach_without_harm() -> Result<()> {
    let mut node = Node::start().await?;
    let shell = Ctr {
        name: "sh",
        command: &["sh"],
        stdin: true,
        ..Default::default()
    };
    let (_, id) = node.pod_with("attach", &shell).await?;
    for transport in TRANSPORTS {
        let typing = node.crictl.command(&["attach", "-i", "-r", transport, &id]);
        let mut typist = PtyClient::spawn(typing, 24, 80);
        let watching = node.crictl.command(&["attach", "-r", transport, &id]);
        let watcher = PtyClient::spawn(watching, 24, 80);
        let needle = format!("{transport}-{}", 40 + 2);
        let command = format!("echo {transport}-$((40+2))\r");
        // Both see what the shell prints in answer to one client's input.
        until_seen(&mut typist, &watcher, &command, &needle).await;
        typist.expect(0, &needle, WAIT).await;
        // Detaching (the clients go away) leaves the container running.
        drop((typist, watcher));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(node.state(&id).await?, ContainerState::ContainerRunning);
        assert!(
            node.log("attach", "sh").contains(&needle),
            "{}",
            node.log("attach", "sh")
        );
    }
    Ok(())
}

#[tokio::test]
async fn stdin_once_ends_the_input_when_the_first_client_closes_it() -> Result<()> {
    stdin_once_ends_the_input(Node::start().await?).await
}

#[tokio::test]
async fn stdin_once_ends_the_input_on_containerd_too() -> Result<()> {
    stdin_once_ends_the_input(Node::start_on_containerd().await?).await
}

async fn stdin_once_ends_the_input(mut node: Node) -> Result<()> {
    let cat = Ctr {
        name: "cat",
        command: &["cat"],
        stdin: true,
        stdin_once: true,
        ..Default::default()
    };
    let (_, id) = node.pod_with("once", &cat).await?;
    // Input then end-of-file: cat echoes it and exits, which ends the attach.
    let run = node
        .crictl
        .run(&["attach", "-i", &id], Some(b"abc\n"))
        .await;
    assert_eq!(run.stdout, "abc\n", "{}", run.stderr);
    let mut exited = false;
    for _ in 0..100 {
        if node.state(&id).await? == ContainerState::ContainerExited {
            exited = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(exited, "cat never saw the end of its input");
    assert!(
        node.log("once", "cat").contains("stdout F abc"),
        "{}",
        node.log("once", "cat")
    );
    Ok(())
}

#[tokio::test]
async fn a_terminal_container_is_attached_on_its_terminal() -> Result<()> {
    let mut node = Node::start().await?;
    let tty = Ctr {
        name: "tty",
        command: &["sh"],
        stdin: true,
        tty: true,
        ..Default::default()
    };
    let (_, id) = node.pod_with("tty", &tty).await?;
    let command = node.crictl.command(&["attach", "-it", &id]);
    let mut client = PtyClient::spawn(command, 40, 100);
    let mut shown = false;
    for _ in 0..100 {
        let mark = client.mark();
        client
            .type_text("stty size; tty; echo on-tty-$((1+2))\r")
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        if client.output()[mark..].contains("on-tty-3") {
            shown = true;
            break;
        }
    }
    assert!(shown, "{:?}", client.output());
    let out = client.output();
    assert!(out.contains("40 100") && out.contains("/dev/pts/"), "{out}");
    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(node.state(&id).await?, ContainerState::ContainerRunning);
    // The terminal's output is the container's stdout in its log.
    let log = node.log("tty", "tty");
    assert!(
        log.contains(" stdout ") && log.contains("on-tty-3"),
        "{log}"
    );
    assert!(!log.contains(" stderr "), "{log}");
    Ok(())
}
