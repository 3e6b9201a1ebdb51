//! Exec and attach: kubelet's remotecommand protocols over SPDY or WebSocket, and
//! the session that pumps bytes between the client's streams and the process the
//! runtime started.

mod resize;
mod status;
mod transport;

use std::future::Future;
use std::time::Duration;

use futures::future::{join, OptionFuture};
use runtimes::types::{AttachRequest, ExecStreamRequest, StdioRequest, TerminalSize};
use runtimes::{ContainerId, Runtime};
use tokio::sync::mpsc;

use super::channel::{pump_in, pump_out, Inbound, Outbound};
pub use resize::ResizeParser;
pub use status::{Outcome, StatusFormat};

pub use transport::{over_spdy, over_websocket, SPDY_PROTOCOLS, WEBSOCKET_PROTOCOLS};

/// How long output may still flow after the process exited: a child it left running
/// can hold stdout open, and must not hold the session open with it.
const DRAIN: Duration = Duration::from_secs(2);

/// What a session runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A new process.
    Exec {
        /// The container.
        id: ContainerId,
        /// The command and streams.
        request: ExecStreamRequest,
    },
    /// The container's main process.
    Attach {
        /// The container.
        id: ContainerId,
        /// The streams.
        request: AttachRequest,
    },
}

impl Target {
    fn stdio(&self) -> StdioRequest {
        match self {
            Target::Exec { request, .. } => request.stdio,
            Target::Attach { request, .. } => request.stdio,
        }
    }
}

/// The client's streams of one session, whatever the transport.
pub struct Streams {
    /// What the client types.
    pub stdin: Option<Inbound>,
    /// Where stdout goes.
    pub stdout: Option<Outbound>,
    /// Where stderr goes.
    pub stderr: Option<Outbound>,
    /// Where the final status goes.
    pub error: Option<Outbound>,
    /// Terminal sizes from the client.
    pub resize: Option<Inbound>,
    /// How the status is written.
    pub format: StatusFormat,
}

/// Runs `target` with `streams` until the process ends (then writes the status) or
/// `gone` resolves (the client left or the server stops: the session is dropped,
/// which kills an exec'd process and detaches an attach).
pub async fn run(runtime: &dyn Runtime, target: &Target, streams: Streams, gone: impl Future) {
    let Streams {
        stdin,
        stdout,
        stderr,
        error,
        resize,
        format,
    } = streams;
    let ends = Ends {
        stdout: stdout.clone(),
        stderr: stderr.clone(),
        error,
        format,
    };
    let started = match target {
        Target::Exec { id, request } => runtime.exec(id, request).await,
        Target::Attach { id, request } => runtime.attach(id, request).await,
    };
    let session = match started {
        Ok(session) => session,
        Err(e) => {
            let what = match target {
                Target::Exec { .. } => "executing command in container",
                Target::Attach { .. } => "attaching to container",
            };
            tracing::warn!(error = %e, "streaming: {what} failed");
            ends.finish(Outcome::Error(format!("error {what}: {e}")))
                .await;
            return;
        }
    };

    let inputs = join(
        OptionFuture::from(stdin.zip(session.stdin).map(|(i, w)| pump_in(i, w))),
        OptionFuture::from(resize.zip(session.resize).map(|(i, r)| pump_resize(i, r))),
    );
    let outputs = join(
        OptionFuture::from(session.stdout.map(|r| pump_out(r, stdout))),
        OptionFuture::from(session.stderr.map(|r| pump_out(r, stderr))),
    );
    tokio::pin!(inputs, outputs, gone);
    let mut done = session.done;
    let (mut inputs_done, mut outputs_done) = (false, false);
    let result = loop {
        tokio::select! {
            _ = &mut gone => return,
            result = &mut done => break result,
            _ = &mut outputs, if !outputs_done => outputs_done = true,
            _ = &mut inputs, if !inputs_done => inputs_done = true,
        }
    };
    if !outputs_done {
        tokio::select! {
            _ = &mut gone => return,
            _ = tokio::time::timeout(DRAIN, &mut outputs) => {}
        }
    }
    let outcome = match (result, target) {
        (Ok(0), _) | (Ok(_), Target::Attach { .. }) => Outcome::Success,
        (Ok(code), Target::Exec { .. }) => Outcome::ExitCode(code),
        (Err(e), _) => Outcome::Error(e.to_string()),
    };
    ends.finish(outcome).await;
}

/// The client streams a session ends on.
struct Ends {
    stdout: Option<Outbound>,
    stderr: Option<Outbound>,
    error: Option<Outbound>,
    format: StatusFormat,
}

impl Ends {
    /// Ends the output streams (the pumps did unless the drain timed out; a second
    /// end is dropped by the transport), then writes the status and ends its stream.
    async fn finish(self, outcome: Outcome) {
        for out in [&self.stdout, &self.stderr].into_iter().flatten() {
            let _ = out.finish().await;
        }
        if let Some(error) = &self.error {
            if let Some(status) = outcome.encode(self.format) {
                let _ = error.send(status).await;
            }
            let _ = error.finish().await;
        }
    }
}

/// Forwards terminal sizes until the client closes the resize stream.
async fn pump_resize(mut inbound: Inbound, sizes: mpsc::Sender<TerminalSize>) {
    let mut parser = ResizeParser::default();
    while let Some(data) = inbound.recv().await {
        for size in parser.push(&data) {
            if sizes.send(size).await.is_err() {
                return;
            }
        }
        if parser.is_broken() {
            return;
        }
    }
}
