//! Lets gRPC clients that send their unix socket's path as the HTTP/2 `:authority` in.
//!
//! gRPC's C core (Python, C++, Ruby, PHP), grpc-java and grpc-dotnet send the socket
//! path, or a percent-encoded form of it (`tmp%2Frun%2Fberth.sock` for
//! `unix:///tmp/run/berth.sock`), as `:authority` on unix sockets. h2, under hyper and
//! tonic, builds each request's URI from the pseudo-headers and resets a stream whose
//! authority does not parse (RST_STREAM PROTOCOL_ERROR). No release has an option to
//! relax that (checked up to h2 0.4.21, hyper 1.13, tonic 0.14.9; the h2 pull request
//! that would, #487, has stayed open for years, and hyper's maintainer asks clients to
//! send a valid name instead). On berth's socket, local and root-only, the authority
//! means nothing: nothing routes or authorizes by it.
//!
//! So, rather than fork the HTTP/2 stack, this adapter sits between the socket and
//! h2 on the client-to-server byte stream. It passes frames through unchanged, except
//! header blocks: each one (HEADERS plus any CONTINUATION) is read with an HPACK
//! decoder kept in step with h2's ([`hpack`]), and a block whose `:authority` h2 would
//! refuse is re-emitted with that value rewritten to one of the same length (so both
//! ends' dynamic tables stay identical), split into frames no larger than the 16 KiB
//! every HTTP/2 server accepts. DATA and every other frame, flow control included, go
//! through untouched; the server-to-client direction is not looked at. Anything the
//! adapter cannot follow (not HTTP/2, a malformed frame sequence, a header block it
//! cannot decode or larger than [`MAX_BLOCK`]) switches the connection to plain
//! pass-through: h2 then sees exactly what the client sent, as before.

mod hpack;
mod huffman;

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// The client connection preface (RFC 9113 section 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// SETTINGS_MAX_FRAME_SIZE's floor: the frames the adapter writes fit any server.
const MAX_FRAME: usize = 16 * 1024;
/// The largest header block held back for decoding, as sent. hyper refuses header lists
/// over 16 KiB decoded, and HPACK's longest Huffman code is 30 bits a byte: any block
/// h2 would accept is far smaller.
const MAX_BLOCK: usize = 256 * 1024;

/// A connection whose client-to-server bytes go through [`Filter`].
#[derive(Debug)]
pub struct AuthorityFix<IO> {
    io: IO,
    filter: Filter,
    /// Filtered bytes not yet read by the server.
    ready: BytesMut,
    eof: bool,
}

impl<IO> AuthorityFix<IO> {
    /// Wraps a freshly accepted connection.
    pub fn new(io: IO) -> Self {
        AuthorityFix {
            io,
            filter: Filter::default(),
            ready: BytesMut::new(),
            eof: false,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for AuthorityFix<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            if this.filter.is_passthrough() {
                // Nothing left to look at: read straight into the server's buffer.
                return Pin::new(&mut this.io).poll_read(cx, buf);
            }
            let mut chunk = [0u8; 8 * 1024];
            let mut read = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
            if read.filled().is_empty() {
                this.eof = true;
                this.filter.finish(&mut this.ready);
            } else {
                this.filter.push(read.filled(), &mut this.ready);
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<IO: Connected> Connected for AuthorityFix<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// Where the filter is in the client's byte stream.
#[derive(Debug)]
enum State {
    /// Before the end of the connection preface.
    Preface,
    /// Before the end of a frame header.
    FrameHeader,
    /// Forwarding the rest of a frame that is not part of a header block.
    Payload { remaining: usize },
    /// Holding back a whole frame of a header block (its header is in `pending`).
    BlockFrame { len: usize },
    /// Not looking anymore.
    Passthrough,
}

/// The header block being collected: its frames as they came, and its fragment.
#[derive(Debug, Default)]
struct Block {
    stream: u32,
    /// The HEADERS frame's END_STREAM and PRIORITY flags.
    flags: u8,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
    raw: Vec<u8>,
}

/// The client-to-server byte stream's rewriter, without I/O.
#[derive(Debug)]
struct Filter {
    state: State,
    /// Bytes received but not yet forwarded or parsed.
    pending: BytesMut,
    block: Option<Block>,
    hpack: hpack::Rewriter,
}

impl Default for Filter {
    fn default() -> Self {
        Filter {
            state: State::Preface,
            pending: BytesMut::new(),
            block: None,
            hpack: hpack::Rewriter::default(),
        }
    }
}

impl Filter {
    fn is_passthrough(&self) -> bool {
        matches!(self.state, State::Passthrough) && self.pending.is_empty()
    }

    /// Takes bytes from the client; appends what the server may read to `out`.
    fn push(&mut self, input: &[u8], out: &mut BytesMut) {
        self.pending.extend_from_slice(input);
        while self.step(out) {}
    }

    /// The client closed: whatever is held back goes to the server as it came.
    fn finish(&mut self, out: &mut BytesMut) {
        self.give_up(out);
    }

    /// One step of parsing; false when more input is needed.
    fn step(&mut self, out: &mut BytesMut) -> bool {
        match self.state {
            State::Passthrough => {
                out.extend_from_slice(&self.pending.split());
                false
            }
            State::Preface => {
                let n = self.pending.len().min(PREFACE.len());
                if self.pending[..n] != PREFACE[..n] {
                    self.give_up(out);
                    return true;
                }
                if n < PREFACE.len() {
                    return false;
                }
                out.extend_from_slice(&self.pending.split_to(n));
                self.state = State::FrameHeader;
                true
            }
            State::Payload { remaining } => {
                let n = remaining.min(self.pending.len());
                out.extend_from_slice(&self.pending.split_to(n));
                self.state = match remaining - n {
                    0 => State::FrameHeader,
                    remaining => State::Payload { remaining },
                };
                n > 0 || remaining == 0
            }
            State::FrameHeader => {
                if self.pending.len() < FRAME_HEADER {
                    return false;
                }
                let header = &self.pending[..FRAME_HEADER];
                let len = usize::from(header[0]) << 16
                    | usize::from(header[1]) << 8
                    | usize::from(header[2]);
                let kind = header[3];
                let in_block = self.block.is_some();
                if kind == HEADERS && !in_block || kind == CONTINUATION && in_block {
                    let held = self.block.as_ref().map_or(0, |b| b.raw.len());
                    if held + FRAME_HEADER + len > MAX_BLOCK {
                        self.give_up(out);
                    } else {
                        self.state = State::BlockFrame { len };
                    }
                } else if in_block {
                    // RFC 9113 section 6.10: nothing may interrupt a header block. h2
                    // closes the connection on it.
                    self.give_up(out);
                } else {
                    out.extend_from_slice(&self.pending.split_to(FRAME_HEADER));
                    self.state = State::Payload { remaining: len };
                }
                true
            }
            State::BlockFrame { len } => {
                if self.pending.len() < FRAME_HEADER + len {
                    return false;
                }
                let frame = self.pending.split_to(FRAME_HEADER + len);
                self.state = State::FrameHeader;
                if !self.collect(&frame) {
                    self.give_up_with(&frame, out);
                    return true;
                }
                if frame[4] & END_HEADERS != 0 {
                    self.finish_block(out);
                }
                true
            }
        }
    }

    /// Adds a HEADERS or CONTINUATION frame to the block; false when it is malformed.
    fn collect(&mut self, frame: &[u8]) -> bool {
        let flags = frame[4];
        let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let mut payload = &frame[FRAME_HEADER..];
        let block = match self.block.take() {
            Some(block) if block.stream == stream => block,
            Some(block) => {
                self.block = Some(block);
                return false;
            }
            None => {
                let mut block = Block {
                    stream,
                    flags: flags & (END_STREAM | PRIORITY),
                    ..Block::default()
                };
                let padding = if flags & PADDED != 0 {
                    let Some((&pad, rest)) = payload.split_first() else {
                        return false;
                    };
                    payload = rest;
                    usize::from(pad)
                } else {
                    0
                };
                if flags & PRIORITY != 0 {
                    let Some((priority, rest)) = payload.split_first_chunk::<5>() else {
                        return false;
                    };
                    block.priority = Some(*priority);
                    payload = rest;
                }
                let Some(len) = payload.len().checked_sub(padding) else {
                    return false;
                };
                payload = &payload[..len];
                block
            }
        };
        let block = self.block.insert(block);
        block.fragment.extend_from_slice(payload);
        block.raw.extend_from_slice(frame);
        true
    }

    /// The block is complete: forwards it as it came, or rewritten.
    fn finish_block(&mut self, out: &mut BytesMut) {
        let Some(block) = self.block.take() else {
            return;
        };
        match self.hpack.rewrite(&block.fragment) {
            Ok(None) => out.extend_from_slice(&block.raw),
            Ok(Some(fragment)) => {
                tracing::debug!(
                    stream = block.stream,
                    "rewrote an :authority the HTTP/2 server would refuse"
                );
                write_block(&block, &fragment, out);
            }
            Err(error) => {
                tracing::debug!(%error, "cannot follow the client's header compression; passing its bytes through");
                out.extend_from_slice(&block.raw);
                self.state = State::Passthrough;
            }
        }
    }

    /// Forwards everything held back as it came and stops looking.
    fn give_up(&mut self, out: &mut BytesMut) {
        if let Some(block) = self.block.take() {
            out.extend_from_slice(&block.raw);
        }
        out.extend_from_slice(&self.pending.split());
        self.state = State::Passthrough;
    }

    /// `give_up`, with `frame` (already taken from `pending`) in its place.
    fn give_up_with(&mut self, frame: &[u8], out: &mut BytesMut) {
        if let Some(block) = self.block.take() {
            out.extend_from_slice(&block.raw);
        }
        out.extend_from_slice(frame);
        self.give_up(out);
    }
}

/// Writes `fragment` as `block`'s HEADERS frame and as many CONTINUATION frames as it
/// takes, without padding.
fn write_block(block: &Block, fragment: &[u8], out: &mut BytesMut) {
    let first_room = MAX_FRAME - if block.priority.is_some() { 5 } else { 0 };
    let (first, mut rest) = fragment.split_at(fragment.len().min(first_room));
    let last = rest.is_empty();
    let flags = block.flags | if last { END_HEADERS } else { 0 };
    let priority = block.priority.as_ref().map_or(&[][..], |p| &p[..]);
    frame_header(
        out,
        priority.len() + first.len(),
        HEADERS,
        flags,
        block.stream,
    );
    out.extend_from_slice(priority);
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(MAX_FRAME));
        let flags = if tail.is_empty() { END_HEADERS } else { 0 };
        frame_header(out, chunk.len(), CONTINUATION, flags, block.stream);
        out.extend_from_slice(chunk);
        rest = tail;
    }
}

fn frame_header(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream: u32) {
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
