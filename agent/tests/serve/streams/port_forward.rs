//! `crictl port-forward`: a web server in a pod (busybox httpd) answers through it,
//! over both transports, on several connections at once; a pod on the host's
//! network is reached on the host's loopback; a closed port fails the connection.

use std::time::Duration;

use anyhow::Result;
use berth_testkit::servers::free_port;

use super::{http_get, Ctr, Node, TRANSPORTS};

/// The page busybox's httpd serves from the test image's `/www`.
const PAGE: &str = "hello from a berth pod";

/// Starts `crictl port-forward` from a free local port to `remote` of `pod` and waits
/// until a GET through it answers; the client (killed when dropped) and the answer.
async fn forward(
    node: &Node,
    transport: &str,
    pod: &str,
    remote: u16,
) -> Result<(tokio::process::Child, u16, String)> {
    let local = free_port();
    let mapping = format!("{local}:{remote}");
    let child = node
        .crictl
        .command(&["port-forward", "-r", transport, pod, &mapping])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut last = String::new();
    for _ in 0..100 {
        match http_get(local).await {
            Ok(answer) if !answer.is_empty() => return Ok((child, local, answer)),
            Ok(_) => last = "an empty answer".into(),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("no answer through port-forward {mapping}: {last}")
}

#[tokio::test]
async fn port_forward_reaches_a_web_server_in_the_pod() -> Result<()> {
    let mut node = Node::start().await?;
    let web = Ctr {
        name: "web",
        command: &["httpd", "-f", "-p", "8080", "-h", "/www"],
        ..Default::default()
    };
    let (pod, _) = node.pod_with("web", &web).await?;
    for transport in TRANSPORTS {
        let (_client, local, answer) = forward(&node, transport, &pod, 8080).await?;
        assert!(
            answer.starts_with("HTTP/1.") && answer.contains(PAGE),
            "{transport}: {answer}"
        );
        // Several connections at once, each a stream pair of its own.
        let answers = futures::future::join_all((0..8).map(|_| http_get(local))).await;
        for answer in answers {
            let answer = answer?;
            assert!(answer.contains(PAGE), "{transport}: {answer}");
        }
    }

    // Nothing listens on 8081 in the pod: the connection is closed without an answer.
    let local = free_port();
    let mapping = format!("{local}:8081");
    let _client = node
        .crictl
        .command(&["port-forward", &pod, &mapping])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut refused = false;
    for _ in 0..100 {
        match http_get(local).await {
            // crictl listens, forwards, and closes the connection when berth reports
            // the error.
            Ok(answer) if answer.is_empty() => {
                refused = true;
                break;
            }
            Ok(answer) => panic!("a closed port answered: {answer}"),
            // crictl is not listening yet.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(
        refused,
        "the forward to a closed port never closed a connection"
    );
    Ok(())
}

#[tokio::test]
async fn port_forward_to_a_host_network_pod_uses_the_hosts_loopback() -> Result<()> {
    let mut node = Node::start().await?;
    let port = free_port().to_string();
    let web = Ctr {
        name: "web",
        command: &["httpd", "-f", "-p", &port, "-h", "/www"],
        ..Default::default()
    };
    let pod = node.pod("hostweb", true).await?;
    node.run(&pod, "hostweb", &web).await?;
    let (_client, _, answer) = forward(&node, "spdy", &pod, port.parse()?).await?;
    assert!(answer.contains(PAGE), "{answer}");
    Ok(())
}
