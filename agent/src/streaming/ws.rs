//! The WebSocket transports: the handshake checks, the Kubernetes channel protocols
//! (`channel.k8s.io` and its `v4.`, `v5.` and `base64.` variants: every message
//! starts with its channel number) and the SPDY tunnel (`SPDY/3.1+portforward.k8s.io`:
//! binary messages carry a SPDY byte stream). tungstenite does the framing.

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hyper::HeaderMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

/// The v5 channel-protocol message that half-closes a channel: `[255, channel]`.
const CLOSE_CHANNEL: u8 = 255;
/// Messages queued for the writer.
const WRITE_QUEUE: usize = 64;

/// True when `headers` ask for a WebSocket upgrade.
pub fn is_websocket(headers: &HeaderMap) -> bool {
    let has = |name: &str, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has("upgrade", "websocket") && has("connection", "upgrade")
}

/// The subprotocols the client offers, in its order of preference.
pub fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// The `Sec-WebSocket-Accept` answer to a valid version-13 handshake.
pub fn accept_key(headers: &HeaderMap) -> Result<String, String> {
    let version = headers
        .get("sec-websocket-version")
        .and_then(|v| v.to_str().ok());
    if version != Some("13") {
        return Err(format!(
            "unsupported Sec-WebSocket-Version {version:?}; this server speaks 13"
        ));
    }
    let key = headers
        .get("sec-websocket-key")
        .ok_or("missing Sec-WebSocket-Key")?;
    Ok(tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()))
}

/// How a channel protocol encodes its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Binary messages: `[channel, payload…]`.
    Binary,
    /// Text messages: the channel as an ASCII digit, then the payload in base64.
    Base64,
}

/// Sends messages on a channel-protocol connection; cheap to clone.
#[derive(Clone)]
pub struct Sender {
    messages: mpsc::Sender<Message>,
    codec: Codec,
}

impl Sender {
    /// Sends `data` on `channel`.
    pub async fn send(&self, channel: u8, data: &[u8]) -> io::Result<()> {
        let message = match self.codec {
            Codec::Binary => {
                let mut frame = Vec::with_capacity(data.len() + 1);
                frame.push(channel);
                frame.extend_from_slice(data);
                Message::Binary(frame.into())
            }
            Codec::Base64 => {
                let text = format!("{}{}", char::from(b'0' + channel), STANDARD.encode(data));
                Message::text(text)
            }
        };
        self.messages
            .send(message)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the WebSocket is closed"))
    }
}

/// One channel-protocol connection; dropping it aborts its tasks.
pub struct Channels {
    sender: Sender,
    gone: CancellationToken,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

/// Serves a channel protocol on `socket`: client messages on a channel of `inbound`
/// go to its queue (dropped when the client half-closes it with v5's
/// `[255, channel]`); other channels' messages are ignored, as kubelet does.
pub fn serve_channels<IO>(
    socket: WebSocketStream<IO>,
    codec: Codec,
    inbound: HashMap<u8, mpsc::Sender<Bytes>>,
) -> Channels
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, stream) = socket.split();
    let (messages, message_rx) = mpsc::channel(WRITE_QUEUE);
    let gone = CancellationToken::new();
    let writer = tokio::spawn(write_loop(sink, message_rx, gone.clone()));
    let reader = tokio::spawn(read_loop(stream, codec, inbound, gone.clone()));
    Channels {
        sender: Sender { messages, codec },
        gone,
        reader,
        writer,
    }
}

impl Channels {
    /// A sender for this connection.
    pub fn sender(&self) -> Sender {
        self.sender.clone()
    }

    /// Resolves when the client closed the connection or it failed.
    pub async fn closed(&self) {
        self.gone.cancelled().await
    }

    /// A normal close (1000), then up to `linger` for the client's close reply.
    pub async fn close(self, linger: Duration) {
        let close = Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }));
        if self.sender.messages.send(close).await.is_ok() {
            let _ = tokio::time::timeout(linger, self.gone.cancelled()).await;
        }
    }
}

impl Drop for Channels {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
        self.gone.cancel();
    }
}

async fn write_loop<S>(mut sink: S, mut messages: mpsc::Receiver<Message>, gone: CancellationToken)
where
    S: futures::Sink<Message> + Unpin,
{
    while let Some(message) = messages.recv().await {
        let closing = matches!(message, Message::Close(_));
        let queued = sink.feed(message).await;
        let sent = match queued {
            Ok(()) if closing || messages.is_empty() => sink.flush().await,
            other => other,
        };
        if sent.is_err() {
            gone.cancel();
            return;
        }
        if closing {
            return;
        }
    }
}

/// Splits a client message into its channel and payload; `None` for a malformed one.
fn decode(message: Message, codec: Codec) -> Option<(u8, Bytes)> {
    match (message, codec) {
        (Message::Binary(data), Codec::Binary) if !data.is_empty() => {
            Some((data[0], data.slice(1..)))
        }
        (Message::Text(text), Codec::Base64) if !text.is_empty() => {
            let bytes = text.as_bytes();
            let channel = bytes[0].checked_sub(b'0')?;
            let payload = STANDARD.decode(&bytes[1..]).ok()?;
            Some((channel, payload.into()))
        }
        _ => None,
    }
}

async fn read_loop<S>(
    mut stream: S,
    codec: Codec,
    mut inbound: HashMap<u8, mpsc::Sender<Bytes>>,
    gone: CancellationToken,
) where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let message = tokio::select! {
            message = stream.next() => message,
            _ = gone.cancelled() => break,
        };
        let message = match message {
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            Some(Ok(message)) => message,
        };
        if let Message::Binary(data) = &message {
            if data.first() == Some(&CLOSE_CHANNEL) {
                match data.get(1) {
                    Some(channel) if data.len() == 2 => drop(inbound.remove(channel)),
                    _ => break,
                }
                continue;
            }
        }
        let Some((channel, payload)) = decode(message, codec) else {
            continue;
        };
        let Some(queue) = inbound.get(&channel) else {
            continue;
        };
        let delivered = payload.is_empty()
            || tokio::select! {
                sent = queue.send(payload) => sent.is_ok(),
                _ = gone.cancelled() => break,
            };
        if !delivered {
            inbound.remove(&channel);
        }
    }
    gone.cancel();
}

/// Carries a byte stream over `socket` (the SPDY tunnel): each binary message from
/// the client is appended to the returned stream, and what is written to it goes
/// out as binary messages. Ends when either side closes.
pub fn tunnel<IO>(socket: WebSocketStream<IO>) -> DuplexStream
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (mut read_half, mut write_half) = tokio::io::split(theirs);
    let (mut sink, mut stream) = socket.split();
    tokio::spawn(async move {
        let inbound = async {
            while let Some(Ok(message)) = stream.next().await {
                let data = match message {
                    Message::Binary(data) => data,
                    Message::Close(_) | Message::Text(_) => break,
                    _ => continue,
                };
                if write_half.write_all(&data).await.is_err() {
                    break;
                }
            }
            let _ = write_half.shutdown().await;
        };
        let outbound = async {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match read_half.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let message = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
                        if sink.send(message).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let close = CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            };
            let _ = sink.send(Message::Close(Some(close))).await;
        };
        // The tunnel lives until the SPDY side is done writing, or the client went.
        tokio::select! {
            _ = outbound => {}
            _ = inbound => {}
        }
    });
    ours
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn recognizes_upgrades_and_lists_offered_protocols_in_order() {
        let h = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
            (
                "sec-websocket-protocol",
                "v5.channel.k8s.io, v4.channel.k8s.io",
            ),
            ("sec-websocket-protocol", "channel.k8s.io"),
        ]);
        assert!(is_websocket(&h));
        assert_eq!(
            offered_protocols(&h),
            ["v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"]
        );
        assert!(!is_websocket(&headers(&[("upgrade", "SPDY/3.1")])));
    }

    #[test]
    fn accept_key_follows_rfc6455() {
        // The example of RFC 6455 section 1.3.
        let h = headers(&[
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
        ]);
        assert_eq!(accept_key(&h).unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert!(accept_key(&headers(&[("sec-websocket-version", "13")])).is_err());
        assert!(accept_key(&headers(&[("sec-websocket-key", "x")])).is_err());
    }

    #[test]
    fn messages_decode_per_codec() {
        let binary = Message::Binary(Bytes::from_static(&[0, b'h', b'i']));
        assert_eq!(
            decode(binary, Codec::Binary),
            Some((0, Bytes::from_static(b"hi")))
        );
        assert_eq!(
            decode(Message::text("4aGk="), Codec::Base64),
            Some((4, Bytes::from_static(b"hi")))
        );
        assert_eq!(decode(Message::text("0!!"), Codec::Base64), None);
        assert_eq!(decode(Message::Binary(Bytes::new()), Codec::Binary), None);
        assert_eq!(decode(Message::text("0aGk="), Codec::Binary), None);
    }
}
