//! What `Exec`, `Attach` and `PortForward` refuse, as kubelet sees it over gRPC: an
//! unknown id is `NotFound`, a container that is not running (or a pod that is not
//! ready) is `FailedPrecondition`, asking for no stream is `InvalidArgument`. The URLs
//! they answer are single-use and expire: a spent or stale token gets HTTP 404.

use std::time::Duration;

use anyhow::{Context, Result};
use berth_proto::cri::v1::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use super::{Ctr, Node, SLEEPER, WAIT};

const UNKNOWN_ID: &str = "0d1e2f3a4b5c4c1e2f3a9b8d4e7fa6c5";

fn exec(id: &str, stdin: bool, stdout: bool, stderr: bool) -> ExecRequest {
    ExecRequest {
        container_id: id.into(),
        cmd: vec!["sh".into()],
        stdin,
        stdout,
        stderr,
        tty: false,
    }
}

fn attach(id: &str, stdin: bool, stdout: bool, stderr: bool) -> AttachRequest {
    AttachRequest {
        container_id: id.into(),
        stdin,
        stdout,
        stderr,
        tty: false,
    }
}

fn forward(pod: &str, ports: &[i32]) -> PortForwardRequest {
    PortForwardRequest {
        pod_sandbox_id: pod.into(),
        port: ports.to_vec(),
    }
}

/// The code of a refused call, and that its message names `id`.
fn refused<T: std::fmt::Debug>(answer: Result<T, tonic::Status>, id: &str) -> Code {
    let status = answer.expect_err("a bad streaming request was answered");
    assert!(status.message().contains(id), "{status:?}");
    status.code()
}

/// Opens `url` as a SPDY client would (upgrade, one subprotocol); the HTTP status.
async fn upgrade(url: &str) -> Result<u16> {
    let rest = url.strip_prefix("http://").context("not an http URL")?;
    let (authority, path) = rest.split_at(rest.find('/').context("no path")?);
    let protocol = if path.starts_with("/portforward/") {
        "portforward.k8s.io"
    } else {
        "v4.channel.k8s.io"
    };
    let mut conn = tokio::net::TcpStream::connect(authority).await?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
         X-Stream-Protocol-Version: {protocol}\r\nContent-Length: 0\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, conn.read(&mut byte))
            .await
            .context("no answer")??;
        anyhow::ensure!(n == 1, "closed after {:?}", String::from_utf8_lossy(&head));
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let code = head
        .split_whitespace()
        .nth(1)
        .context("no status line")?
        .parse()?;
    Ok(code)
}

#[tokio::test]
async fn bad_streaming_requests_get_kubelets_codes() -> Result<()> {
    let mut node = Node::start().await?;
    let (pod, running) = node.pod_with("checks", &SLEEPER).await?;
    let idle = Ctr {
        name: "idle",
        ..SLEEPER
    };
    let created = node.create(&pod, "checks", &idle).await?;
    let c = &mut node.client;

    // Unknown ids.
    let code = refused(
        c.exec(exec(UNKNOWN_ID, false, true, false)).await,
        UNKNOWN_ID,
    );
    assert_eq!(code, Code::NotFound);
    let code = refused(
        c.attach(attach(UNKNOWN_ID, false, true, false)).await,
        UNKNOWN_ID,
    );
    assert_eq!(code, Code::NotFound);
    let code = refused(c.port_forward(forward(UNKNOWN_ID, &[80])).await, UNKNOWN_ID);
    assert_eq!(code, Code::NotFound);

    // A container that was created but never started.
    let code = refused(c.exec(exec(&created, false, true, false)).await, &created);
    assert_eq!(code, Code::FailedPrecondition);
    let code = refused(c.attach(attach(&created, true, true, true)).await, &created);
    assert_eq!(code, Code::FailedPrecondition);

    // No stream asked for, on a running container.
    let code = refused(c.exec(exec(&running, false, false, false)).await, "");
    assert_eq!(code, Code::InvalidArgument);
    let code = refused(c.attach(attach(&running, false, false, false)).await, "");
    assert_eq!(code, Code::InvalidArgument);
    // A port no TCP socket can have.
    let code = refused(c.port_forward(forward(&pod, &[70000])).await, "70000");
    assert_eq!(code, Code::InvalidArgument);

    // Everything valid is answered; a stopped pod is not ready.
    c.exec(exec(&running, true, true, true)).await?;
    c.attach(attach(&running, false, true, true)).await?;
    c.port_forward(forward(&pod, &[80])).await?;
    c.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await?;
    let code = refused(c.port_forward(forward(&pod, &[80])).await, &pod);
    assert_eq!(code, Code::FailedPrecondition);
    let code = refused(c.exec(exec(&running, false, true, false)).await, &running);
    assert_eq!(code, Code::FailedPrecondition);
    Ok(())
}

#[tokio::test]
async fn a_token_serves_once_then_is_not_found() -> Result<()> {
    let mut node = Node::start().await?;
    let (pod, id) = node.pod_with("tokens", &SLEEPER).await?;
    let c = &mut node.client;
    let urls = [
        c.exec(exec(&id, false, true, true)).await?.into_inner().url,
        c.attach(attach(&id, false, true, true))
            .await?
            .into_inner()
            .url,
        c.port_forward(forward(&pod, &[80])).await?.into_inner().url,
    ];
    for url in urls {
        assert_eq!(upgrade(&url).await?, 101, "{url}: the first use");
        assert_eq!(upgrade(&url).await?, 404, "{url}: reused");
    }
    // A token of another kind of request is no token for this one.
    let url = c.exec(exec(&id, false, true, true)).await?.into_inner().url;
    let as_attach = url.replace("/exec/", "/attach/");
    assert_eq!(upgrade(&as_attach).await?, 404, "{as_attach}");
    Ok(())
}

#[tokio::test]
async fn a_token_expires_after_its_ttl() -> Result<()> {
    let mut node = Node::start_with("streaming:\n  token_ttl_seconds: 1\n").await?;
    let (_, id) = node.pod_with("expiry", &SLEEPER).await?;
    let fresh = node
        .client
        .exec(exec(&id, false, true, true))
        .await?
        .into_inner()
        .url;
    let stale = node
        .client
        .exec(exec(&id, false, true, true))
        .await?
        .into_inner()
        .url;
    assert_eq!(upgrade(&fresh).await?, 101, "{fresh}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(upgrade(&stale).await?, 404, "{stale}");
    Ok(())
}
