//! The server side of one SPDY/3.1 connection: a reader task that turns frames into
//! streams and their data, and a writer task that owns the outgoing compression
//! context and serializes every frame the stream handlers send.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use super::frame::{rst, Frame, FrameDecoder, FrameEncoder, FLAG_FIN};
use super::headers::Headers;

/// DATA frames queued per stream before the reader waits for the handler: the
/// reader then stops reading the socket, which is the only flow control spdystream
/// peers expect.
const STREAM_QUEUE: usize = 16;
/// Frames queued for the writer.
const WRITE_QUEUE: usize = 64;
/// The largest DATA payload sent; spdystream reads any size, smaller frames keep
/// one busy stream from delaying the others for long.
const MAX_DATA: usize = 32 * 1024;

/// A stream the client opened.
#[derive(Debug)]
pub struct Incoming {
    /// Its id (odd).
    pub id: u32,
    /// The headers of its SYN_STREAM (`streamtype`, `port`, `requestid`, …).
    pub headers: Headers,
    /// Its DATA payloads; ends when the client half-closes or resets it.
    pub data: mpsc::Receiver<Bytes>,
}

enum Command {
    Frame(Frame),
    /// The client reset the stream: drop what is still queued for it.
    Forget(u32),
    /// Flush, then shut down the write half (TCP FIN).
    Shutdown,
}

/// Sends frames on a connection; cheap to clone, one per stream handler.
#[derive(Clone)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
    gone: CancellationToken,
    /// The last stream the client opened, for GOAWAY.
    last_id: Arc<AtomicU32>,
}

/// The tasks of one connection; dropping it aborts them and closes the socket.
pub struct Connection {
    handle: Handle,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

/// Serves the SPDY connection on `io` (whose HTTP upgrade is done): returns the
/// connection and the streams the client opens, in order.
pub fn serve<IO>(io: IO) -> (Connection, mpsc::Receiver<Incoming>)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(io);
    let (commands, command_rx) = mpsc::channel(WRITE_QUEUE);
    let (incoming, incoming_rx) = mpsc::channel(8);
    let gone = CancellationToken::new();
    let handle = Handle {
        commands,
        gone,
        last_id: Arc::default(),
    };
    let writer = tokio::spawn(write_loop(
        FramedWrite::new(write, FrameEncoder::default()),
        command_rx,
        handle.gone.clone(),
    ));
    let reader = tokio::spawn(read_loop(
        FramedRead::new(read, FrameDecoder::default()),
        incoming,
        handle.clone(),
    ));
    let connection = Connection {
        handle,
        reader,
        writer,
    };
    (connection, incoming_rx)
}

impl Connection {
    /// A handle to send frames with.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Ends the connection politely: GOAWAY, FIN, then waits up to `linger` for the
    /// client to close its side, so that it reads everything before the socket goes.
    pub async fn close(self, linger: std::time::Duration) {
        let handle = self.handle();
        let last_good = handle.last_id.load(Ordering::Relaxed);
        let _ = handle
            .send(Frame::GoAway {
                last_good,
                status: 0,
            })
            .await;
        let _ = handle.commands.send(Command::Shutdown).await;
        let _ = tokio::time::timeout(linger, handle.closed()).await;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
        self.handle.gone.cancel();
    }
}

fn broken() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the SPDY connection is closed")
}

impl Handle {
    /// Queues `frame` for the writer.
    pub async fn send(&self, frame: Frame) -> io::Result<()> {
        self.commands
            .send(Command::Frame(frame))
            .await
            .map_err(|_| broken())
    }

    /// Accepts the stream `id` (SYN_REPLY without headers, as kubelet does).
    pub async fn reply(&self, id: u32) -> io::Result<()> {
        self.send(Frame::SynReply {
            stream_id: id,
            flags: 0,
            headers: Headers::new(),
        })
        .await
    }

    /// Sends `data` on the stream `id`, in frames of at most 32 KiB.
    pub async fn data(&self, id: u32, mut data: Bytes) -> io::Result<()> {
        while !data.is_empty() {
            let chunk = data.split_to(data.len().min(MAX_DATA));
            self.send(Frame::Data {
                stream_id: id,
                flags: 0,
                data: chunk,
            })
            .await?;
        }
        Ok(())
    }

    /// Half-closes the stream `id`: the server sends nothing more on it.
    pub async fn fin(&self, id: u32) -> io::Result<()> {
        self.send(Frame::Data {
            stream_id: id,
            flags: FLAG_FIN,
            data: Bytes::new(),
        })
        .await
    }

    /// Resets the stream `id`.
    pub async fn reset(&self, id: u32, status: u32) -> io::Result<()> {
        self.send(Frame::RstStream {
            stream_id: id,
            status,
        })
        .await
    }

    /// Resolves when the client is gone: it closed the connection, said GOAWAY, broke
    /// the protocol, or the socket failed.
    pub async fn closed(&self) {
        self.gone.cancelled().await
    }
}

async fn read_loop<R>(
    mut frames: FramedRead<R, FrameDecoder>,
    incoming: mpsc::Sender<Incoming>,
    handle: Handle,
) where
    R: AsyncRead + Unpin,
{
    let gone = handle.gone.clone();
    let mut streams: HashMap<u32, mpsc::Sender<Bytes>> = HashMap::new();
    let mut last_id = 0;
    loop {
        let frame = tokio::select! {
            frame = frames.next() => frame,
            _ = gone.cancelled() => break,
        };
        let frame = match frame {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "SPDY connection ends");
                break;
            }
            None => break,
        };
        match frame {
            Frame::SynStream {
                stream_id,
                flags,
                headers,
                ..
            } => {
                // Client streams are odd and increasing (SPDY/3 2.3.2).
                if stream_id % 2 == 0 || stream_id <= last_id {
                    let _ = handle.reset(stream_id, rst::PROTOCOL_ERROR).await;
                    continue;
                }
                last_id = stream_id;
                handle.last_id.store(stream_id, Ordering::Relaxed);
                let (data, data_rx) = mpsc::channel(STREAM_QUEUE);
                if flags & FLAG_FIN == 0 {
                    streams.insert(stream_id, data);
                }
                let stream = Incoming {
                    id: stream_id,
                    headers,
                    data: data_rx,
                };
                if incoming.send(stream).await.is_err() {
                    streams.remove(&stream_id);
                    let _ = handle.reset(stream_id, rst::REFUSED_STREAM).await;
                }
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if let Some(queue) = streams.get(&stream_id) {
                    let delivered = data.is_empty()
                        || tokio::select! {
                            sent = queue.send(data) => sent.is_ok(),
                            _ = gone.cancelled() => break,
                        };
                    if !delivered {
                        // The handler no longer reads this stream; drop its data.
                        streams.remove(&stream_id);
                    }
                }
                if flags & FLAG_FIN != 0 {
                    streams.remove(&stream_id);
                }
            }
            Frame::Headers {
                stream_id, flags, ..
            } if flags & FLAG_FIN != 0 => {
                streams.remove(&stream_id);
            }
            Frame::RstStream { stream_id, .. } => {
                streams.remove(&stream_id);
                let _ = handle.commands.send(Command::Forget(stream_id)).await;
            }
            // Echo the client's pings (odd ids); ours would be even, and we send none.
            Frame::Ping { id } if id % 2 == 1 => {
                let _ = handle.send(Frame::Ping { id }).await;
            }
            Frame::GoAway { .. } => break,
            _ => {}
        }
    }
    gone.cancel();
}

async fn write_loop<W>(
    mut frames: FramedWrite<W, FrameEncoder>,
    mut commands: mpsc::Receiver<Command>,
    gone: CancellationToken,
) where
    W: AsyncWrite + Unpin,
{
    // Streams the server finished or the client reset: nothing more goes out on
    // them, so a second FIN or late data is dropped here.
    let mut closed = HashSet::new();
    while let Some(command) = commands.recv().await {
        let result = match command {
            Command::Frame(frame) => {
                if let Frame::Data {
                    stream_id, flags, ..
                } = &frame
                {
                    if closed.contains(stream_id) {
                        continue;
                    }
                    if flags & FLAG_FIN != 0 {
                        closed.insert(*stream_id);
                    }
                }
                if let Frame::RstStream { stream_id, .. } = &frame {
                    closed.insert(*stream_id);
                }
                match frames.feed(frame).await {
                    // Batch what is queued into one write.
                    Ok(()) if commands.is_empty() => frames.flush().await,
                    other => other,
                }
            }
            Command::Forget(id) => {
                closed.insert(id);
                Ok(())
            }
            Command::Shutdown => {
                let flushed = frames.flush().await;
                let _ = frames.get_mut().shutdown().await;
                if let Err(e) = flushed {
                    tracing::debug!(error = %e, "SPDY write failed");
                }
                return;
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "SPDY write failed");
            gone.cancel();
            return;
        }
    }
}
