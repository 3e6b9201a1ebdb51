//! Setting up a session's streams: over SPDY the client opens one stream per
//! standard stream (named by its `streamType` header) and the server waits for all
//! it expects; over WebSocket the channels exist from the start.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use runtimes::types::StdioRequest;
use runtimes::Runtime;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::{run, Streams, Target};
use crate::streaming::channel::Outbound;
use crate::streaming::remotecommand::status::StatusFormat;
use crate::streaming::{spdy, ws, LINGER};

/// The SPDY subprotocols (`X-Stream-Protocol-Version`), newest first.
pub const SPDY_PROTOCOLS: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

/// The WebSocket subprotocols, newest first. v5 adds the stdin half-close.
pub const WEBSOCKET_PROTOCOLS: &[&str] = &[
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
];

/// Channels of the WebSocket protocols.
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;

/// Inbound messages queued per channel before the reader waits.
const QUEUE: usize = 16;

/// Resolves when the client is gone or the server stops.
async fn either(client_gone: impl std::future::Future, stop: &CancellationToken) {
    tokio::select! {
        _ = client_gone => {}
        _ = stop.cancelled() => {}
    }
}

/// Serves one exec or attach over the SPDY connection on `io`, with the negotiated
/// `protocol`, until it ends.
pub async fn over_spdy<IO>(
    io: IO,
    protocol: &str,
    runtime: Arc<dyn Runtime>,
    target: Target,
    creation_timeout: Duration,
    stop: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (conn, mut incoming) = spdy::serve(io);
    let handle = conn.handle();
    let gathered = tokio::select! {
        gathered = tokio::time::timeout(
            creation_timeout,
            gather(&handle, &mut incoming, protocol, target.stdio()),
        ) => gathered,
        _ = stop.cancelled() => return,
    };
    let streams = match gathered {
        Ok(Some(streams)) => streams,
        Ok(None) => return,
        Err(_) => {
            tracing::warn!(
                "streaming: the client did not open its streams within {creation_timeout:?}"
            );
            return;
        }
    };
    // Streams opened after these are refused.
    drop(incoming);
    run(&*runtime, &target, streams, either(handle.closed(), &stop)).await;
    conn.close(LINGER).await;
}

/// Waits for the streams the protocol and request call for, accepting each.
async fn gather(
    conn: &spdy::Handle,
    incoming: &mut mpsc::Receiver<spdy::Incoming>,
    protocol: &str,
    stdio: StdioRequest,
) -> Option<Streams> {
    let resizable = matches!(protocol, "v4.channel.k8s.io" | "v3.channel.k8s.io");
    let expected = 1
        + usize::from(stdio.stdin)
        + usize::from(stdio.stdout)
        + usize::from(stdio.stderr)
        + usize::from(stdio.tty && resizable);
    let format = if protocol == "v4.channel.k8s.io" {
        StatusFormat::Json
    } else {
        StatusFormat::Text
    };
    let mut streams = Streams {
        stdin: None,
        stdout: None,
        stderr: None,
        error: None,
        resize: None,
        format,
    };
    let mut received = 0;
    while received < expected {
        let stream = incoming.recv().await?;
        conn.reply(stream.id).await.ok()?;
        let out = Outbound::Spdy {
            conn: conn.clone(),
            stream: stream.id,
        };
        let kind = stream.headers.get("streamtype").unwrap_or_default();
        let new = match kind {
            "error" => fill(&mut streams.error, out),
            "stdin" => fill(&mut streams.stdin, stream.data),
            "stdout" => fill(&mut streams.stdout, out),
            "stderr" => fill(&mut streams.stderr, out),
            "resize" => fill(&mut streams.resize, stream.data),
            other => {
                tracing::debug!(
                    stream_type = other,
                    "streaming: ignoring a stream of unknown type"
                );
                false
            }
        };
        received += usize::from(new);
    }
    Some(streams)
}

/// Fills an empty slot; a second stream of one type is ignored.
fn fill<T>(slot: &mut Option<T>, value: T) -> bool {
    if slot.is_some() {
        return false;
    }
    *slot = Some(value);
    true
}

/// Serves one exec or attach over `socket`, whose `protocol` was negotiated
/// (`None` when the client offered none: the original binary protocol).
pub async fn over_websocket<IO>(
    socket: WebSocketStream<IO>,
    protocol: Option<&str>,
    runtime: Arc<dyn Runtime>,
    target: Target,
    stop: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let protocol = protocol.unwrap_or("channel.k8s.io");
    let codec = if protocol.contains("base64") {
        ws::Codec::Base64
    } else {
        ws::Codec::Binary
    };
    let format = if protocol.starts_with("v4.") || protocol.starts_with("v5.") {
        StatusFormat::Json
    } else {
        StatusFormat::Text
    };
    let stdio = target.stdio();
    let mut inbound = HashMap::new();
    let stdin = stdio.stdin.then(|| {
        let (queue, data) = mpsc::channel(QUEUE);
        inbound.insert(STDIN, queue);
        data
    });
    let (queue, resize) = mpsc::channel(QUEUE);
    inbound.insert(RESIZE, queue);
    let conn = ws::serve_channels(socket, codec, inbound);
    let out = |channel| Outbound::WebSocket {
        socket: conn.sender(),
        channel,
    };
    let streams = Streams {
        stdin,
        stdout: stdio.stdout.then(|| out(STDOUT)),
        stderr: stdio.stderr.then(|| out(STDERR)),
        error: Some(out(ERROR)),
        resize: Some(resize),
        format,
    };
    // kubelet's first message: an empty one on the first output channel.
    let first = match (stdio.stdout, stdio.stderr) {
        (true, _) => STDOUT,
        (false, true) => STDERR,
        _ => ERROR,
    };
    let _ = conn.sender().send(first, &[]).await;
    run(&*runtime, &target, streams, either(conn.closed(), &stop)).await;
    conn.close(LINGER).await;
}
