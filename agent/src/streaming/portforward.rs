//! Port forwarding: kubelet's `portforward.k8s.io` over SPDY (the client opens a
//! data and an error stream per connection, paired by `requestID`, naming the
//! `port`), the same carried in a WebSocket (`SPDY/3.1+portforward.k8s.io`, what
//! client-go's WebSocket dialer speaks), and the WebSocket channel protocol (a data
//! and an error channel per port of the CRI request, each starting with the port in
//! little endian).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use runtimes::{ContainerId, Runtime};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::channel::{pump_out, Inbound, Outbound};
use super::{spdy, ws, LINGER};

/// The SPDY subprotocol (`X-Stream-Protocol-Version`).
pub const SPDY_PROTOCOLS: &[&str] = &["portforward.k8s.io"];

/// The WebSocket subprotocol that tunnels the SPDY protocol.
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// The WebSocket channel subprotocols.
pub const WEBSOCKET_PROTOCOLS: &[&str] = &["v4.channel.k8s.io", "v4.base64.channel.k8s.io"];

/// The most ports one WebSocket connection can carry: two channels each, and
/// channel 255 is reserved.
pub const MAX_WEBSOCKET_PORTS: usize = 127;

/// Connects to `port` of `sandbox` and copies bytes both ways until the pod side
/// closes; the client half-closing only half-closes the pod connection. The error
/// is the message for the client's error stream.
async fn forward(
    runtime: &dyn Runtime,
    sandbox: &ContainerId,
    port: u16,
    mut inbound: Inbound,
    data: &Outbound,
) -> Result<(), String> {
    let conn = runtime
        .port_forward(sandbox, port)
        .await
        .map_err(|e| format!("error forwarding port {port} to pod {sandbox}, uid : {e}"))?;
    let (reader, mut writer) = tokio::io::split(conn);
    let to_pod = async {
        while let Some(bytes) = inbound.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = pump_out(Box::new(reader), Some(data.clone())) => {}
        _ = to_pod => {}
    }
    Ok(())
}

/// A data or error stream waiting for its partner.
#[derive(Default)]
struct Pair {
    data: Option<spdy::Incoming>,
    error: Option<spdy::Incoming>,
    opened: Option<Instant>,
}

/// The port a stream names, and whether it is the data stream; kubelet's checks.
fn check(stream: &spdy::Incoming) -> Result<(u16, bool), String> {
    let port = stream
        .headers
        .get("port")
        .ok_or("\"port\" header is required")?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("unable to parse {port:?} as a port"))?;
    if port == 0 {
        return Err("port \"0\" must be > 0".into());
    }
    match stream.headers.get("streamtype") {
        Some("data") => Ok((port, true)),
        Some("error") => Ok((port, false)),
        Some(other) => Err(format!("invalid stream type {other:?}")),
        None => Err("\"streamType\" header is required".into()),
    }
}

/// The pair a stream belongs to: its `requestID`, or for old clients without one
/// the error stream's id (a data stream comes two ids after its error stream).
fn request_id(stream: &spdy::Incoming, is_data: bool) -> String {
    match stream.headers.get("requestid") {
        Some(id) if !id.is_empty() => id.to_string(),
        _ if is_data => stream.id.saturating_sub(2).to_string(),
        _ => stream.id.to_string(),
    }
}

/// Serves port forwarding over the SPDY connection on `io` until the client leaves.
pub async fn over_spdy<IO>(
    io: IO,
    runtime: Arc<dyn Runtime>,
    sandbox: ContainerId,
    creation_timeout: Duration,
    stop: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (conn, mut incoming) = spdy::serve(io);
    let handle = conn.handle();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut forwards = JoinSet::new();
    loop {
        let oldest = pairs.values().filter_map(|p| p.opened).min();
        let expiry = oldest.map(|t| t + creation_timeout);
        tokio::select! {
            _ = handle.closed() => break,
            _ = stop.cancelled() => break,
            Some(_) = forwards.join_next() => {}
            _ = tokio::time::sleep_until(expiry.unwrap_or_else(Instant::now)), if expiry.is_some() => {
                expire(&handle, &mut pairs, creation_timeout).await;
            }
            stream = incoming.recv() => {
                let Some(stream) = stream else { break };
                let (port, is_data) = match check(&stream) {
                    Ok(checked) => checked,
                    Err(why) => {
                        tracing::debug!(stream = stream.id, "streaming: refusing a port-forward stream: {why}");
                        let _ = handle.reset(stream.id, spdy::rst::CANCEL).await;
                        continue;
                    }
                };
                if handle.reply(stream.id).await.is_err() {
                    break;
                }
                let id = request_id(&stream, is_data);
                let pair = pairs.entry(id.clone()).or_default();
                pair.opened.get_or_insert_with(Instant::now);
                let slot = if is_data { &mut pair.data } else { &mut pair.error };
                if slot.is_some() {
                    let kind = if is_data { "data" } else { "error" };
                    let message = format!("error processing stream for request {id}: {kind} stream already assigned");
                    print_error(&handle, pair, &message).await;
                    continue;
                }
                *slot = Some(stream);
                if pair.data.is_some() && pair.error.is_some() {
                    if let Some(Pair { data: Some(data), error: Some(error), .. }) = pairs.remove(&id) {
                        let runtime = runtime.clone();
                        let sandbox = sandbox.clone();
                        let handle = handle.clone();
                        forwards.spawn(async move {
                            forward_pair(&*runtime, &sandbox, &handle, port, data, error).await
                        });
                    }
                }
            }
        }
    }
    // Dropping the forwards closes their pod connections.
    drop(forwards);
    conn.close(LINGER).await;
}

/// Writes `message` on the pair's error stream, if it has one.
async fn print_error(conn: &spdy::Handle, pair: &Pair, message: &str) {
    if let Some(error) = &pair.error {
        let _ = conn
            .data(error.id, message.as_bytes().to_vec().into())
            .await;
    }
}

/// Drops pairs whose partner did not come within `timeout`, telling the client.
async fn expire(conn: &spdy::Handle, pairs: &mut HashMap<String, Pair>, timeout: Duration) {
    let now = Instant::now();
    let expired: Vec<String> = pairs
        .iter()
        .filter(|(_, p)| p.opened.is_some_and(|t| t + timeout <= now))
        .map(|(id, _)| id.clone())
        .collect();
    for id in expired {
        if let Some(pair) = pairs.remove(&id) {
            print_error(
                conn,
                &pair,
                &format!("timed out waiting for streams of request {id}"),
            )
            .await;
            for stream in [&pair.data, &pair.error].into_iter().flatten() {
                let _ = conn.reset(stream.id, spdy::rst::CANCEL).await;
            }
        }
    }
}

/// Forwards one connection of a complete pair, then ends both streams.
async fn forward_pair(
    runtime: &dyn Runtime,
    sandbox: &ContainerId,
    conn: &spdy::Handle,
    port: u16,
    data: spdy::Incoming,
    error: spdy::Incoming,
) {
    let out = Outbound::Spdy {
        conn: conn.clone(),
        stream: data.id,
    };
    match forward(runtime, sandbox, port, data.data, &out).await {
        Ok(()) => {
            let _ = conn.fin(data.id).await;
            let _ = conn.fin(error.id).await;
        }
        Err(message) => {
            tracing::debug!(%sandbox, port, "streaming: {message}");
            let _ = conn.data(error.id, message.into_bytes().into()).await;
            let _ = conn.reset(data.id, spdy::rst::CANCEL).await;
            let _ = conn.reset(error.id, spdy::rst::CANCEL).await;
        }
    }
}

/// Serves the WebSocket channel protocol for `ports` over `socket` until every
/// forward ended or the client left.
pub async fn over_websocket<IO>(
    socket: WebSocketStream<IO>,
    protocol: Option<&str>,
    runtime: Arc<dyn Runtime>,
    sandbox: ContainerId,
    ports: Vec<u16>,
    stop: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let codec = if protocol.is_some_and(|p| p.contains("base64")) {
        ws::Codec::Base64
    } else {
        ws::Codec::Binary
    };
    let mut inbound = HashMap::new();
    let mut queues = Vec::new();
    for index in 0..ports.len() {
        let (queue, data) = mpsc::channel(16);
        inbound.insert(data_channel(index), queue);
        queues.push(data);
    }
    let conn = ws::serve_channels(socket, codec, inbound);
    for (index, port) in ports.iter().enumerate() {
        let sender = conn.sender();
        let _ = sender.send(data_channel(index), &port.to_le_bytes()).await;
        let _ = sender
            .send(data_channel(index) + 1, &port.to_le_bytes())
            .await;
    }
    let forwards = ports
        .iter()
        .zip(queues)
        .enumerate()
        .map(|(index, (port, data))| {
            let (runtime, sandbox, sender) = (&runtime, &sandbox, conn.sender());
            async move {
                let out = Outbound::WebSocket {
                    socket: sender.clone(),
                    channel: data_channel(index),
                };
                if let Err(message) = forward(&**runtime, sandbox, *port, data, &out).await {
                    let _ = sender
                        .send(data_channel(index) + 1, message.as_bytes())
                        .await;
                }
            }
        });
    tokio::select! {
        _ = join_all(forwards) => {}
        _ = conn.closed() => return,
        _ = stop.cancelled() => return,
    }
    conn.close(LINGER).await;
}

/// The data channel of the `index`-th port; its error channel is the next one.
fn data_channel(index: usize) -> u8 {
    // Callers keep `index` below MAX_WEBSOCKET_PORTS.
    (index * 2) as u8
}
