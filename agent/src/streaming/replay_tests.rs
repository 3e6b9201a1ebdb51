//! The server against recorded client bytes: what crictl sent containerd (the
//! vectors of `spdy/vectors_tests.rs`, compressed headers included) is sent to
//! berth's server, and its answer must say what containerd's said.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use runtimes::types::{
    AttachRequest, ExecStreamRequest, FsUsage, ImageInfo, PortStream, PullRequest, StdioRequest,
    StreamSession, TerminalSize,
};
use runtimes::{ContainerId, Result, Runtime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Decoder;

use super::spdy::vectors_tests::{decode_all, recorded};
use super::spdy::{Frame, FrameDecoder, FLAG_FIN};
use super::{StreamingConfig, StreamingServer};

/// What the sessions of the scripted runtime received.
#[derive(Default)]
struct Seen {
    stdin: Vec<u8>,
    sizes: Vec<TerminalSize>,
}

/// Plays the part of the recorded containers: `exec` prints `out`/`err` and exits 3,
/// or echoes stdin, or (with a tty) exits 7 once it read `exit 7`; port 80 answers
/// one HTTP request.
#[derive(Clone, Default)]
struct Scripted(Arc<Mutex<Seen>>);

#[async_trait]
impl Runtime for Scripted {
    fn name(&self) -> &str {
        "scripted"
    }
    fn runs_os(&self, _os: &str) -> bool {
        true
    }
    async fn pull_image(&self, _: &PullRequest) -> Result<ImageInfo> {
        Err(self.unsupported("PullImage"))
    }
    async fn image_status(&self, _: &str) -> Result<Option<ImageInfo>> {
        Ok(None)
    }
    async fn list_images(&self) -> Result<Vec<ImageInfo>> {
        Ok(Vec::new())
    }
    async fn remove_image(&self, _: &str) -> Result<()> {
        Ok(())
    }
    async fn image_fs_info(&self) -> Result<Vec<FsUsage>> {
        Ok(Vec::new())
    }

    async fn exec(&self, _: &ContainerId, request: &ExecStreamRequest) -> Result<StreamSession> {
        let stdio = request.stdio;
        if !stdio.stdin {
            return Ok(StreamSession {
                stdin: None,
                stdout: Some(Box::new(std::io::Cursor::new(b"out\n".to_vec()))),
                stderr: Some(Box::new(std::io::Cursor::new(b"err\n".to_vec()))),
                resize: None,
                done: Box::pin(async { Ok(3) }),
            });
        }
        // The process side of stdin and stdout.
        let (ours, mut process) = tokio::io::duplex(4096);
        let (stdout, stdin) = tokio::io::split(ours);
        let (exit_tx, exit) = oneshot::channel();
        let seen = self.0.clone();
        tokio::spawn(async move {
            if stdio.tty {
                let _ = process.write_all(b"40 100\r\n").await;
            }
            let mut buf = [0u8; 1024];
            while let Ok(n) = process.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let all = {
                    let mut seen = seen.lock().unwrap();
                    seen.stdin.extend_from_slice(&buf[..n]);
                    seen.stdin.clone()
                };
                if !stdio.tty {
                    let _ = process.write_all(&buf[..n]).await;
                }
                if all.ends_with(b"exit 7\r") {
                    break;
                }
            }
            let _ = exit_tx.send(if stdio.tty { 7 } else { 0 });
        });
        let (resize, mut sizes) = mpsc::channel(4);
        let seen = self.0.clone();
        tokio::spawn(async move {
            while let Some(size) = sizes.recv().await {
                seen.lock().unwrap().sizes.push(size);
            }
        });
        Ok(StreamSession {
            stdin: Some(Box::new(stdin)),
            stdout: Some(Box::new(stdout)),
            stderr: (!stdio.tty).then(|| Box::new(tokio::io::empty()) as _),
            resize: stdio.tty.then_some(resize),
            done: Box::pin(async move { Ok(exit.await.unwrap_or(-1)) }),
        })
    }

    async fn attach(&self, _: &ContainerId, _: &AttachRequest) -> Result<StreamSession> {
        Err(self.unsupported("Attach"))
    }

    async fn port_forward(&self, _: &ContainerId, port: u16) -> Result<PortStream> {
        assert_eq!(port, 80);
        let (ours, mut pod) = tokio::io::duplex(4096);
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                match pod.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = pod.write_all(b"HTTP/1.0 200 OK\r\n\r\nhi").await;
        });
        Ok(Box::new(ours))
    }
}

/// Sends the recorded client direction `name` (up to the first frame `stop` picks)
/// to `url` in place of the recorded request, and returns the server's frames up to
/// its GOAWAY, or until `done` holds for port forwarding (which the client ends).
async fn replay(
    url: &str,
    name: &str,
    stop: impl Fn(&Frame) -> bool,
    done: impl Fn(&[Frame]) -> bool,
) -> Vec<Frame> {
    let recorded = recorded(name);
    let cut = decode_all(&recorded.spdy)
        .iter()
        .take_while(|(frame, _)| !stop(frame))
        .last()
        .map(|(_, end)| *end)
        .unwrap_or(0);
    let (addr, path) = url.trim_start_matches("http://").split_once('/').unwrap();
    let head = recorded.head.replacen(
        recorded.head.split(' ').nth(1).unwrap(),
        &format!("/{path}"),
        1,
    );
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&recorded.spdy[..cut]).await.unwrap();

    let mut wire = BytesMut::new();
    let mut decoder = FrameDecoder::default();
    let mut frames = Vec::new();
    let mut head_done = false;
    let read = async {
        loop {
            if !head_done {
                if let Some(end) = wire.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = wire.split_to(end + 4);
                    assert!(head.starts_with(b"HTTP/1.1 101 "), "{head:?}");
                    head_done = true;
                }
            }
            while let Some(frame) = head_done
                .then(|| decoder.decode(&mut wire).unwrap())
                .flatten()
            {
                let last = matches!(frame, Frame::GoAway { .. });
                frames.push(frame);
                if last || done(&frames) {
                    return;
                }
            }
            if conn.read_buf(&mut wire).await.unwrap() == 0 {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the server did not finish");
    frames
}

fn stream_data(frames: &[Frame], id: u32) -> (Vec<u8>, bool) {
    let mut data = Vec::new();
    let mut finished = false;
    for frame in frames {
        if let Frame::Data {
            stream_id,
            flags,
            data: bytes,
        } = frame
        {
            if *stream_id == id {
                data.extend_from_slice(bytes);
                finished |= flags & FLAG_FIN != 0;
            }
        }
    }
    (data, finished)
}

/// crictl's resets come after the server's answer, in reaction to it.
fn is_reset(frame: &Frame) -> bool {
    matches!(frame, Frame::RstStream { .. })
}

fn status(frames: &[Frame]) -> serde_json::Value {
    let (data, finished) = stream_data(frames, 1);
    assert!(finished, "the error stream ends");
    serde_json::from_slice(&data).unwrap()
}

async fn server() -> (StreamingServer, Scripted) {
    let runtime = Scripted::default();
    let server = StreamingServer::start(&StreamingConfig::default(), Arc::new(runtime.clone()))
        .await
        .unwrap();
    (server, runtime)
}

fn ctr() -> ContainerId {
    ContainerId::new("web.default", "app", 0, "node").unwrap()
}

fn exec(cmd: &str, tty: bool, stdin: bool) -> ExecStreamRequest {
    ExecStreamRequest {
        cmd: vec![cmd.into()],
        stdio: StdioRequest {
            tty,
            stdin,
            stdout: true,
            stderr: !tty,
        },
    }
}

#[tokio::test]
async fn recorded_exec_gets_containerds_answer() {
    let (server, _) = server().await;
    let url = server
        .get_exec_url(&ctr(), exec("sh", false, false))
        .unwrap();
    let frames = replay(&url, "exec.client", |_| false, |_| false).await;
    let replies: Vec<u32> = frames
        .iter()
        .filter_map(|f| match f {
            Frame::SynReply { stream_id, .. } => Some(*stream_id),
            _ => None,
        })
        .collect();
    assert_eq!(replies, [1, 3, 5]);
    assert_eq!(stream_data(&frames, 3), (b"out\n".to_vec(), true));
    assert_eq!(stream_data(&frames, 5), (b"err\n".to_vec(), true));
    let status = status(&frames);
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
    assert!(matches!(
        frames.last(),
        Some(Frame::GoAway { last_good: 5, .. })
    ));
}

#[tokio::test]
async fn recorded_stdin_reaches_the_process_and_ends_it() {
    let (server, runtime) = server().await;
    let url = server
        .get_exec_url(&ctr(), exec("cat", false, true))
        .unwrap();
    // Up to crictl's resets, which it sent only after containerd's answer.
    let frames = replay(&url, "exec-stdin.client", is_reset, |_| false).await;
    assert_eq!(stream_data(&frames, 5), (b"hello\n".to_vec(), true));
    assert_eq!(status(&frames)["status"], "Success");
    assert_eq!(runtime.0.lock().unwrap().stdin, b"hello\n");
}

#[tokio::test]
async fn recorded_terminal_session_resizes_and_exits_with_its_code() {
    let (server, runtime) = server().await;
    let url = server.get_exec_url(&ctr(), exec("sh", true, true)).unwrap();
    let frames = replay(&url, "exec-tty.client", |_| false, |_| false).await;
    assert_eq!(stream_data(&frames, 5), (b"40 100\r\n".to_vec(), true));
    assert_eq!(status(&frames)["details"]["causes"][0]["message"], "7");
    let seen = runtime.0.lock().unwrap();
    assert_eq!(seen.stdin, b"stty size\nstty size\rexit 7\r");
    let size = |width, height| TerminalSize { width, height };
    assert_eq!(seen.sizes, [size(100, 40), size(132, 50)]);
}

#[tokio::test]
async fn recorded_port_forward_reaches_the_port() {
    let (server, _) = server().await;
    let sandbox = ContainerId::new("web.default", "sandbox", 0, "node").unwrap();
    let url = server.get_port_forward_url(&sandbox, Vec::new()).unwrap();
    let both_ended = |f: &[Frame]| stream_data(f, 1).1 && stream_data(f, 3).1;
    let frames = replay(&url, "portforward.client", is_reset, both_ended).await;
    assert_eq!(
        stream_data(&frames, 3),
        (b"HTTP/1.0 200 OK\r\n\r\nhi".to_vec(), true)
    );
    assert_eq!(stream_data(&frames, 1), (Vec::new(), true), "no error");
}
