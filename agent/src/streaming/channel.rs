//! One direction of one Kubernetes stream (stdin, stdout, a forwarded port's data…),
//! whichever transport carries it: a SPDY stream or a WebSocket channel. The
//! remotecommand and portforward protocols are written against these only.

use std::io;

use bytes::Bytes;
use runtimes::types::{StreamReader, StreamWriter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::spdy;
use super::ws;

/// Bytes the client sends on one stream; `None` once it closed the stream.
pub type Inbound = mpsc::Receiver<Bytes>;

/// Where bytes for the client on one stream go.
#[derive(Clone)]
pub enum Outbound {
    /// A SPDY stream.
    Spdy {
        /// The connection.
        conn: spdy::Handle,
        /// The stream id.
        stream: u32,
    },
    /// A channel of a WebSocket channel protocol.
    WebSocket {
        /// The connection.
        socket: ws::Sender,
        /// The channel number.
        channel: u8,
    },
}

impl Outbound {
    /// Sends `data`; fails once the connection is gone.
    pub async fn send(&self, data: Bytes) -> io::Result<()> {
        match self {
            Outbound::Spdy { conn, stream } => conn.data(*stream, data).await,
            Outbound::WebSocket { socket, channel } => socket.send(*channel, &data).await,
        }
    }

    /// Says the server sends nothing more: a SPDY FIN. A WebSocket channel has no
    /// such signal from the server; it ends with the connection.
    pub async fn finish(&self) -> io::Result<()> {
        match self {
            Outbound::Spdy { conn, stream } => conn.fin(*stream).await,
            Outbound::WebSocket { .. } => Ok(()),
        }
    }
}

/// The read size of the pumps: one SPDY DATA frame or WebSocket message at most.
const CHUNK: usize = 32 * 1024;

/// Copies `reader` to the client until EOF, then finishes the stream. Without a
/// client stream the output is read and dropped, so the writer never blocks on it.
pub async fn pump_out(mut reader: StreamReader, out: Option<Outbound>) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(out) = &out {
            if out.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                return;
            }
        }
    }
    if let Some(out) = &out {
        let _ = out.finish().await;
    }
}

/// Copies what the client sends to `writer` until the client closes the stream,
/// then shuts `writer` down (end-of-file for the reading side).
pub async fn pump_in(mut inbound: Inbound, mut writer: StreamWriter) {
    while let Some(data) = inbound.recv().await {
        if writer.write_all(&data).await.is_err() || writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}
