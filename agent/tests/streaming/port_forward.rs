//! `crictl port-forward` over SPDY and over WebSocket (client-go tunnels SPDY in
//! WebSocket messages): pages through several connections at once, and the error
//! of a closed port.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Child;

use crate::{Harness, POD, TRANSPORTS};

const WAIT: Duration = Duration::from_secs(20);

/// A tiny HTTP server in "the pod": answers every request with its page and closes.
pub async fn web_server(page: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{page}",
                    page.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
            });
        }
    });
    port
}

/// A port nothing listens on.
pub async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// A running `crictl port-forward` and its local port.
struct Forward {
    child: Child,
    local: u16,
}

async fn forward(h: &Harness, transport: &str, remote: u16) -> Forward {
    let local = closed_port().await;
    let mapping = format!("{local}:{remote}");
    let mut child = h
        .crictl
        .command(&["port-forward", "-r", transport, POD, &mapping])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert!(
        first
            .as_deref()
            .unwrap_or_default()
            .contains("Forwarding from 127.0.0.1"),
        "{transport}: {first:?}"
    );
    // crictl prints a line per connection; a closed pipe would kill it (SIGPIPE).
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Forward { child, local }
}

/// One HTTP request through the forward; what came back before the end (a reset
/// counts as the end: client-go closes its local side without reading it all when
/// the remote side fails).
async fn get(port: u16) -> String {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    conn.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WAIT, conn.read_to_end(&mut answer))
        .await
        .expect("the forwarded connection did not end");
    if let Err(e) = read {
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn pages_come_through_several_connections_at_once() {
    let h = Harness::start().await;
    let port = web_server("hello from the pod").await;
    for transport in TRANSPORTS {
        let mut fwd = forward(&h, transport, port).await;
        let pages = futures::future::join_all((0..4).map(|_| get(fwd.local))).await;
        for page in pages {
            assert!(page.starts_with("HTTP/1.0 200 OK"), "{transport}: {page:?}");
            assert!(
                page.ends_with("hello from the pod"),
                "{transport}: {page:?}"
            );
        }
        // The forward stays up for later connections.
        assert!(
            get(fwd.local).await.ends_with("hello from the pod"),
            "{transport}"
        );
        fwd.child.kill().await.unwrap();
    }
}

#[tokio::test]
async fn a_closed_port_is_an_error_on_the_error_stream() {
    let h = Harness::start().await;
    let port = closed_port().await;
    for transport in TRANSPORTS {
        let mut fwd = forward(&h, transport, port).await;
        assert_eq!(
            get(fwd.local).await,
            "",
            "{transport}: no data from a closed port"
        );
        fwd.child.kill().await.unwrap();
        let mut stderr = String::new();
        fwd.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .await
            .unwrap();
        let expected = format!("error forwarding port {port} to pod");
        assert!(stderr.contains(&expected), "{transport}: {stderr}");
        assert!(
            stderr.contains("Connection refused") || stderr.contains("connection refused"),
            "{transport}: {stderr}"
        );
    }
}
