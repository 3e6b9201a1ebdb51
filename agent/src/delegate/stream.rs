//! The server side of `Exec` and `Attach`: one bidirectional stream per session,
//! pumped to and from the backend's [`StreamSession`].
//!
//! Input messages go to the process (stdin, its close, terminal sizes); output is
//! every stdout/stderr byte, then the exit code. A client that cancels the call (or
//! whose stream fails) ends the session by dropping it: the backend kills an exec'd
//! process and detaches an attach, as for a local client that went away.

use std::pin::Pin;

use berth_proto::delegate::stream_input::Input;
use berth_proto::delegate::stream_output::Output;
use berth_proto::delegate::{StreamInput, StreamOutput, StreamStart};
use futures::Stream;
use runtimes::types::{StdioRequest, StreamReader, StreamSession, TerminalSize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

/// The output half of a streaming call, as tonic wants it.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The output half of a session.
pub type Outbound = BoxStream<StreamOutput>;

/// The first message of a session: its `start`.
pub async fn start(inbound: &mut Streaming<StreamInput>) -> Result<StreamStart, Status> {
    match inbound.message().await? {
        Some(StreamInput {
            input: Some(Input::Start(start)),
        }) => Ok(start),
        _ => Err(Status::invalid_argument(
            "delegate protocol: a session's first message must be `start`",
        )),
    }
}

/// The streams `start` asks for.
pub fn stdio(start: &StreamStart) -> StdioRequest {
    StdioRequest {
        tty: start.tty,
        stdin: start.stdin,
        stdout: start.stdout,
        stderr: start.stderr,
    }
}

/// Pumps `session` until the process ended and its output was sent, or the client
/// went away (then the session is dropped).
pub fn pump(session: StreamSession, mut inbound: Streaming<StreamInput>) -> Outbound {
    let (tx, rx) = mpsc::channel::<Result<StreamOutput, Status>>(16);
    tokio::spawn(async move {
        let StreamSession {
            mut stdin,
            stdout,
            stderr,
            resize,
            done,
        } = session;
        let input = async move {
            while let Ok(Some(message)) = inbound.message().await {
                match message.input {
                    Some(Input::Stdin(bytes)) => {
                        if let Some(w) = stdin.as_mut() {
                            if w.write_all(&bytes).await.is_err() {
                                stdin = None;
                            }
                        }
                    }
                    Some(Input::StdinClose(_)) => {
                        if let Some(mut w) = stdin.take() {
                            let _ = w.shutdown().await;
                        }
                    }
                    Some(Input::Resize(size)) => {
                        if let Some(r) = &resize {
                            let size = TerminalSize {
                                width: u16::try_from(size.width).unwrap_or(u16::MAX),
                                height: u16::try_from(size.height).unwrap_or(u16::MAX),
                            };
                            let _ = r.send(size).await;
                        }
                    }
                    Some(Input::Start(_)) | None => {}
                }
            }
            // The call ended or failed: the client is gone (a client that only
            // closed stdin sends `stdin_close` and keeps the call open).
        };
        let output = async {
            let out = copy(stdout, tx.clone(), Output::Stdout);
            let err = copy(stderr, tx.clone(), Output::Stderr);
            tokio::join!(out, err);
            let message = match done.await {
                Ok(code) => Ok(StreamOutput {
                    output: Some(Output::ExitCode(code)),
                }),
                Err(e) => Err(crate::status::from_runtime(e)),
            };
            let _ = tx.send(message).await;
        };
        tokio::select! {
            () = output => {}
            () = input => {}
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

/// Sends what `reader` yields as `wrap` messages until EOF or the client is gone.
async fn copy(
    reader: Option<StreamReader>,
    tx: mpsc::Sender<Result<StreamOutput, Status>>,
    wrap: fn(Vec<u8>) -> Output,
) {
    let Some(mut reader) = reader else { return };
    let mut buf = vec![0u8; 32 << 10];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let message = StreamOutput {
                    output: Some(wrap(buf[..n].to_vec())),
                };
                if tx.send(Ok(message)).await.is_err() {
                    return;
                }
            }
        }
    }
}
