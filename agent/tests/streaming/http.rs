//! The HTTP side: single-use and expiring tokens (404), bad upgrades, TLS.

use std::sync::Arc;
use std::time::Duration;

use berth::streaming::{StreamingConfig, StreamingServer, TlsFiles};
use runtimes::types::{ExecStreamRequest, StdioRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::local_runtime::LocalRuntime;
use crate::{ctr_id, Harness, CTR, TRANSPORTS};

fn exec_request() -> ExecStreamRequest {
    ExecStreamRequest {
        cmd: vec!["true".into()],
        stdio: StdioRequest {
            stdout: true,
            ..Default::default()
        },
    }
}

/// Sends a raw HTTP/1.1 request and returns the response head.
async fn head(server: &StreamingServer, method: &str, path: &str, headers: &str) -> String {
    let mut conn = TcpStream::connect(server.local_addr()).await.unwrap();
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: 0\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "connection closed: {:?}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

fn path_of(url: &str) -> String {
    let rest = url.split_once("://").unwrap().1;
    rest[rest.find('/').unwrap()..].to_string()
}

const SPDY: &str = "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n";

#[tokio::test]
async fn a_token_works_once_and_only_for_its_verb() {
    let h = Harness::start().await;
    let path = path_of(&h.server.get_exec_url(&ctr_id(), exec_request()).unwrap());
    assert!(path.starts_with("/exec/"), "{path}");
    // The first use spends the token even though this request cannot upgrade.
    let first = head(&h.server, "POST", &path, SPDY).await;
    assert!(first.starts_with("HTTP/1.1 400"), "{first}");
    let again = head(&h.server, "POST", &path, SPDY).await;
    assert!(again.starts_with("HTTP/1.1 404"), "{again}");

    let attach = path_of(&h.server.get_exec_url(&ctr_id(), exec_request()).unwrap());
    let wrong_verb = attach.replacen("/exec/", "/attach/", 1);
    assert!(head(&h.server, "GET", &wrong_verb, "")
        .await
        .starts_with("HTTP/1.1 404"));
    assert!(
        head(&h.server, "GET", &attach, "")
            .await
            .starts_with("HTTP/1.1 404"),
        "spent"
    );
    assert!(head(&h.server, "GET", "/exec/made-up", "")
        .await
        .starts_with("HTTP/1.1 404"));
    assert!(head(&h.server, "GET", "/", "")
        .await
        .starts_with("HTTP/1.1 404"));
    let put = path_of(&h.server.get_exec_url(&ctr_id(), exec_request()).unwrap());
    assert!(head(&h.server, "PUT", &put, "")
        .await
        .starts_with("HTTP/1.1 405"));
}

#[tokio::test]
async fn a_token_expires() {
    let config = StreamingConfig {
        token_ttl_seconds: 1,
        ..Default::default()
    };
    let h = Harness::with_config(config).await;
    let url = h.server.get_exec_url(&ctr_id(), exec_request()).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let late = head(&h.server, "POST", &path_of(&url), SPDY).await;
    assert!(late.starts_with("HTTP/1.1 404"), "{late}");
}

#[tokio::test]
async fn protocol_negotiation_failures_are_answered() {
    let h = Harness::start().await;
    let url = |h: &Harness| path_of(&h.server.get_exec_url(&ctr_id(), exec_request()).unwrap());
    let unknown = format!("{SPDY}X-Stream-Protocol-Version: v9.channel.k8s.io\r\n");
    let refused = head(&h.server, "POST", &url(&h), &unknown).await;
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    assert!(
        refused
            .to_ascii_lowercase()
            .contains("x-accepted-stream-protocol-versions: v4.channel.k8s.io"),
        "{refused}"
    );
    let no_upgrade = "X-Stream-Protocol-Version: v4.channel.k8s.io\r\n";
    let plain = head(&h.server, "POST", &url(&h), no_upgrade).await;
    assert!(plain.starts_with("HTTP/1.1 400"), "{plain}");
    let ws = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v9.channel.k8s.io\r\n";
    let ws_refused = head(&h.server, "GET", &url(&h), ws).await;
    assert!(ws_refused.starts_with("HTTP/1.1 403"), "{ws_refused}");
}

/// A self-signed certificate and key for 127.0.0.1, made with openssl.
fn self_signed(dir: &std::path::Path) -> TlsFiles {
    let (cert, key) = (dir.join("stream.crt"), dir.join("stream.key"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args([
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "openssl failed");
    TlsFiles { cert, key }
}

#[tokio::test]
async fn tls_serves_https_urls() {
    let dir = tempfile::tempdir().unwrap();
    let config = StreamingConfig {
        tls: Some(self_signed(dir.path())),
        ..Default::default()
    };
    let h = Harness::with_config(config).await;
    assert!(h.server.base_url().starts_with("https://127.0.0.1:"));
    for transport in TRANSPORTS {
        // crictl trusts any certificate when given no CA (insecure TLS).
        let run = h
            .crictl
            .run(
                &["exec", "-r", transport, CTR, "sh", "-c", "echo secret"],
                None,
            )
            .await;
        assert_eq!(run.stdout, "secret\n", "{transport}: {}", run.stderr);
    }
}

#[tokio::test]
async fn start_up_errors_name_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Arc::new(LocalRuntime::default());
    let missing = StreamingConfig {
        tls: Some(TlsFiles {
            cert: dir.path().join("none.crt"),
            key: dir.path().join("none.key"),
        }),
        ..Default::default()
    };
    let err = StreamingServer::start(&missing, runtime.clone())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("none.crt"), "{err}");

    let first = StreamingServer::start(&StreamingConfig::default(), runtime.clone())
        .await
        .unwrap();
    let taken = StreamingConfig {
        port: first.local_addr().port(),
        ..Default::default()
    };
    let err = StreamingServer::start(&taken, runtime).await.err().unwrap();
    assert!(
        err.to_string().contains(&first.local_addr().to_string()),
        "{err}"
    );
}
