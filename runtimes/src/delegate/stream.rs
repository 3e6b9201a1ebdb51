//! `Exec` and `Attach`: an interactive session carried by one bidirectional gRPC
//! stream (`StreamInput` up, `StreamOutput` down), handed to the agent's streaming
//! server as a [`StreamSession`] like a local one.
//!
//! Dropping the session before it is done cancels the call, which the delegate takes
//! as the client going away (it kills an exec'd process, detaches an attach).

use berth_proto::delegate::stream_input::Input;
use berth_proto::delegate::stream_output::Output;
use berth_proto::delegate::{StreamInput, StreamOutput, StreamStart};
use futures::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use super::wire::id;
use super::DelegateRuntime;
use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::types::{AttachRequest, ExecStreamRequest, StdioRequest, StreamSession, TerminalSize};

/// Bytes a pipe buffers between the gRPC stream and the streaming server.
const PIPE: usize = 64 << 10;

/// Which verb a session is.
#[derive(Clone, Copy)]
pub(super) enum Verb {
    Exec,
    Attach,
}

impl DelegateRuntime {
    pub(super) async fn exec_session(
        &self,
        container: &ContainerId,
        request: &ExecStreamRequest,
    ) -> Result<StreamSession> {
        self.session(Verb::Exec, container, request.cmd.clone(), request.stdio)
            .await
    }

    pub(super) async fn attach_session(
        &self,
        container: &ContainerId,
        request: &AttachRequest,
    ) -> Result<StreamSession> {
        self.session(Verb::Attach, container, Vec::new(), request.stdio)
            .await
    }

    async fn session(
        &self,
        verb: Verb,
        container: &ContainerId,
        cmd: Vec<String>,
        stdio: StdioRequest,
    ) -> Result<StreamSession> {
        let (input, inbound) = mpsc::channel::<StreamInput>(16);
        let start = StreamStart {
            id: Some(id(container)),
            cmd,
            tty: stdio.tty,
            stdin: stdio.stdin,
            stdout: stdio.stdout,
            stderr: stdio.stderr,
        };
        input
            .send(StreamInput {
                input: Some(Input::Start(start)),
            })
            .await
            .map_err(|_| Error::backend("delegate", "session input closed"))?;
        let mut client = self.client()?;
        let call = ReceiverStream::new(inbound);
        let answer = match verb {
            Verb::Exec => client.exec(call).await,
            Verb::Attach => client.attach(call).await,
        };
        let mut outbound = answer.map_err(|s| self.error(s))?.into_inner();

        // stdin: what the streaming server writes becomes `stdin` messages; its
        // shutdown is `stdin_close`.
        let stdin = if stdio.stdin {
            let (writer, mut reader) = tokio::io::duplex(PIPE);
            let input = input.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 32 << 10];
                loop {
                    let message = match reader.read(&mut buf).await {
                        Ok(0) | Err(_) => Input::StdinClose(true),
                        Ok(n) => Input::Stdin(buf[..n].to_vec()),
                    };
                    let last = matches!(message, Input::StdinClose(_));
                    let sent = input
                        .send(StreamInput {
                            input: Some(message),
                        })
                        .await;
                    if last || sent.is_err() {
                        return;
                    }
                }
            });
            Some(Box::new(writer) as crate::types::StreamWriter)
        } else {
            None
        };
        let resize = if stdio.tty {
            let (sizes, mut rx) = mpsc::channel::<TerminalSize>(4);
            let input = input.clone();
            tokio::spawn(async move {
                while let Some(size) = rx.recv().await {
                    let message = Input::Resize(berth_proto::delegate::TerminalSize {
                        width: size.width.into(),
                        height: size.height.into(),
                    });
                    if input
                        .send(StreamInput {
                            input: Some(message),
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
            Some(sizes)
        } else {
            None
        };
        let (stdout, mut stdout_w) = pipe(stdio.stdout);
        let (stderr, mut stderr_w) = pipe(stdio.stderr && !stdio.tty);

        // Output: bytes to the pipes, then the exit code. The task ends with the
        // call; `input` is kept alive by it so the call stays open until then.
        let service = self.service();
        let (exit, exited) = oneshot::channel::<Result<i32>>();
        let pump = tokio::spawn(async move {
            let _input = input;
            let result = loop {
                match outbound.message().await {
                    Ok(Some(StreamOutput {
                        output: Some(Output::Stdout(bytes)),
                    })) => write(&mut stdout_w, &bytes).await,
                    Ok(Some(StreamOutput {
                        output: Some(Output::Stderr(bytes)),
                    })) => write(&mut stderr_w, &bytes).await,
                    Ok(Some(StreamOutput {
                        output: Some(Output::ExitCode(code)),
                    })) => break Ok(code),
                    Ok(Some(StreamOutput { output: None })) => {}
                    Ok(None) => {
                        break Err(Error::Unavailable {
                            service,
                            message: "the session ended without an exit code".into(),
                        })
                    }
                    Err(status) => break Err(super::connect::from_status(service, status)),
                }
            };
            // EOF on both pipes before the exit code is told.
            drop(stdout_w);
            drop(stderr_w);
            let _ = exit.send(result);
        });
        // Dropping `done` (the session), even unpolled, aborts the pump: the call is
        // cancelled.
        let cancel = AbortOnDrop(pump.abort_handle());
        let service = self.service();
        let done = async move {
            let _cancel = cancel;
            match exited.await {
                Ok(result) => result,
                Err(_) => Err(Error::Unavailable {
                    service,
                    message: "the session ended".into(),
                }),
            }
        }
        .boxed();
        Ok(StreamSession {
            stdin,
            stdout,
            stderr,
            resize,
            done,
        })
    }
}

/// A pipe whose reading end is the session's stream, when `wanted`.
fn pipe(
    wanted: bool,
) -> (
    Option<crate::types::StreamReader>,
    Option<tokio::io::DuplexStream>,
) {
    if !wanted {
        return (None, None);
    }
    let (reader, writer) = tokio::io::duplex(PIPE);
    (Some(Box::new(reader)), Some(writer))
}

/// Writes to a pipe the reader may have dropped (the client stopped reading): the
/// bytes are then discarded, as a local session does.
async fn write(pipe: &mut Option<tokio::io::DuplexStream>, bytes: &[u8]) {
    if let Some(w) = pipe {
        if w.write_all(bytes).await.is_err() {
            *pipe = None;
        }
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
