//! Records real streaming exchanges between crictl and containerd's CRI streaming
//! server (kubelet's streaming library) as test vectors: a CRI stub forwards crictl's
//! `Exec`/`Attach`/`PortForward` to containerd and rewrites the returned URL to a
//! relay, which passes the bytes on and keeps both directions. `record-vectors.sh`
//! (next to this file) sets containerd up and runs this; the vectors land in
//! `agent/src/streaming/spdy/vectors/`, where the framing tests decode them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_proto::cri::v1::runtime_service_client::RuntimeServiceClient;
use berth_testkit::crictl::Crictl;
use berth_testkit::pty::PtyClient;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

use crate::cri_stub::{self, Stub};

const WAIT: Duration = Duration::from_secs(20);

/// Both directions of one relayed connection.
type Recording = (Vec<u8>, Vec<u8>);

/// Relays connections to the upstream of the last rewritten URL and records them.
#[derive(Clone)]
struct Relay {
    addr: SocketAddr,
    upstream: Arc<Mutex<Option<String>>>,
    done: Arc<Mutex<Vec<Recording>>>,
}

impl Relay {
    async fn start() -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = Relay {
            addr: listener.local_addr().unwrap(),
            upstream: Arc::default(),
            done: Arc::default(),
        };
        let this = relay.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = this
                    .upstream
                    .lock()
                    .unwrap()
                    .clone()
                    .expect("no upstream yet");
                let server = TcpStream::connect(upstream).await.unwrap();
                let done = this.done.clone();
                tokio::spawn(async move {
                    let recording = pipe(client, server).await;
                    done.lock().unwrap().push(recording);
                });
            }
        });
        relay
    }

    /// Points the relay at the URL's host and returns the URL through the relay.
    fn rewrite(&self, url: &str) -> String {
        let rest = url
            .strip_prefix("http://")
            .expect("containerd answers http URLs");
        let (host, path) = rest.split_once('/').unwrap();
        *self.upstream.lock().unwrap() = Some(host.to_string());
        format!("http://{}/{path}", self.addr)
    }

    /// Waits for the next finished connection.
    async fn take(&self) -> Recording {
        for _ in 0..(WAIT.as_millis() / 50) {
            if let Some(recording) = self.done.lock().unwrap().pop() {
                return recording;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no relayed connection finished");
    }
}

/// Copies both ways until both directions ended; returns (client→server, server→client).
async fn pipe(client: TcpStream, server: TcpStream) -> Recording {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = async {
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = client_read.read(&mut buf).await {
            if n == 0 || server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        let _ = server_write.shutdown().await;
        seen
    };
    let down = async {
        let mut seen = Vec::new();
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = server_read.read(&mut buf).await {
            if n == 0 || client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        let _ = client_write.shutdown().await;
        seen
    };
    tokio::join!(up, down)
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set (see record-vectors.sh)"))
}

/// Writes a recording as `<name>.client.hex` and `<name>.server.hex`, 32 bytes a line.
fn save(out: &std::path::Path, name: &str, (client, server): &Recording) {
    for (side, bytes) in [("client", client), ("server", server)] {
        let mut text = String::new();
        for line in bytes.chunks(32) {
            text.push_str(&hex::encode(line));
            text.push('\n');
        }
        std::fs::write(out.join(format!("{name}.{side}.hex")), text).unwrap();
    }
    eprintln!(
        "recorded {name}: {} bytes up, {} bytes down",
        client.len(),
        server.len()
    );
}

fn stub(client: RuntimeServiceClient<Channel>, relay: Relay) -> Stub {
    let (c1, c2, c3) = (client.clone(), client.clone(), client);
    let (r1, r2, r3) = (relay.clone(), relay.clone(), relay);
    Stub {
        exec: Arc::new(move |req| {
            let (mut client, relay) = (c1.clone(), r1.clone());
            Box::pin(async move {
                let url = client.exec(req).await?.into_inner().url;
                Ok::<_, Status>(relay.rewrite(&url))
            })
        }),
        attach: Arc::new(move |req| {
            let (mut client, relay) = (c2.clone(), r2.clone());
            Box::pin(async move {
                let url = client.attach(req).await?.into_inner().url;
                Ok(relay.rewrite(&url))
            })
        }),
        port_forward: Arc::new(move |req| {
            let (mut client, relay) = (c3.clone(), r3.clone());
            Box::pin(async move {
                let url = client.port_forward(req).await?.into_inner().url;
                Ok(relay.rewrite(&url))
            })
        }),
    }
}

/// A free local port for crictl port-forward to listen on.
async fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// Runs `crictl port-forward`, makes one HTTP request through it, returns the answer.
async fn forward_once(crictl: &Crictl, pod: &str, remote: &str) -> String {
    let local = free_port().await;
    let mapping = format!("{local}:{remote}");
    let mut child = crictl
        .command(&["port-forward", pod, &mapping])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert!(ready.unwrap_or_default().contains("Forwarding from"));
    // crictl prints a line per connection; a closed pipe would kill it (SIGPIPE).
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let mut conn = TcpStream::connect(("127.0.0.1", local)).await.unwrap();
    conn.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, conn.read_to_end(&mut answer)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
#[ignore = "needs containerd with a running pod: run agent/tests/streaming/record-vectors.sh"]
async fn record_containerd_vectors() {
    let endpoint = env("BERTH_RECORD_ENDPOINT");
    let ctr = env("BERTH_RECORD_CONTAINER");
    let pod = env("BERTH_RECORD_POD");
    let port = env("BERTH_RECORD_PORT");
    let out = PathBuf::from(env("BERTH_RECORD_OUT"));
    std::fs::create_dir_all(&out).unwrap();

    let channel = Endpoint::from_shared(format!("unix://{endpoint}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let relay = Relay::start().await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("cri.sock");
    let _cri = cri_stub::serve(
        stub(RuntimeServiceClient::new(channel), relay.clone()),
        &socket,
    );
    let crictl = Crictl::new(dir.path(), &socket);

    let script = "echo out; echo err >&2; exit 3";
    let run = crictl.run(&["exec", &ctr, "sh", "-c", script], None).await;
    assert!(run.stderr.contains("exit code 3"), "{}", run.stderr);
    save(&out, "exec", &relay.take().await);

    let run = crictl
        .run(&["exec", "-i", &ctr, "cat"], Some(b"hello\n"))
        .await;
    assert_eq!(run.stdout, "hello\n", "{}", run.stderr);
    save(&out, "exec-stdin", &relay.take().await);

    let mut tty = PtyClient::spawn(crictl.command(&["exec", "-it", &ctr, "sh"]), 40, 100);
    tty.type_text("stty size\r").await;
    let at = tty.expect(0, "40 100", WAIT).await;
    tty.resize(50, 132);
    tokio::time::sleep(Duration::from_millis(500)).await;
    tty.type_text("stty size\r").await;
    tty.expect(at, "50 132", WAIT).await;
    tty.type_text("exit 7\r").await;
    tty.wait(WAIT).await;
    tty.expect(at, "exit code 7", WAIT).await;
    save(&out, "exec-tty", &relay.take().await);

    let page = forward_once(&crictl, &pod, &port).await;
    assert!(page.starts_with("HTTP/1."), "{page}");
    save(&out, "portforward", &relay.take().await);

    let closed = forward_once(&crictl, &pod, "1").await;
    assert!(closed.is_empty(), "{closed}");
    save(&out, "portforward-closed", &relay.take().await);
}
