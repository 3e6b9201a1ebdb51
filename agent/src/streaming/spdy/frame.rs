//! SPDY/3.1 frames and their wire format, as moby/spdystream (the library kubelet
//! and client-go use) reads and writes them.
//!
//! Every frame starts with 8 bytes. A control frame: `1 | version:15 | type:16 |
//! flags:8 | length:24`; a data frame: `0 | stream id:31 | flags:8 | length:24`.
//! Header blocks are compressed (see [`super::headers`]), so the decoder and the
//! encoder each keep the zlib context of their direction of the connection.

use std::io;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::headers::{HeaderDecoder, HeaderEncoder, Headers};
use super::protocol_error;

/// The only SPDY version spoken.
const VERSION: u16 = 3;
/// The largest payload a frame can carry (24-bit length).
pub const MAX_PAYLOAD: usize = (1 << 24) - 1;

/// `FLAG_FIN` on a SYN_STREAM, SYN_REPLY, HEADERS or DATA frame: the sender will
/// send nothing more on this stream.
pub const FLAG_FIN: u8 = 0x01;

/// RST_STREAM status codes (SPDY/3 section 2.6.3).
pub mod rst {
    /// The stream broke the protocol.
    pub const PROTOCOL_ERROR: u32 = 1;
    /// The stream is refused before any processing.
    pub const REFUSED_STREAM: u32 = 3;
    /// The stream is no longer needed.
    pub const CANCEL: u32 = 5;
}

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// One setting of a SETTINGS frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Its flags (persist, persisted).
    pub flags: u8,
    /// Which setting.
    pub id: u32,
    /// Its value.
    pub value: u32,
}

/// A SPDY/3.1 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Opens a stream.
    SynStream {
        /// The new stream (odd when the client opens it).
        stream_id: u32,
        /// The stream it belongs to, or 0.
        associated: u32,
        /// 0 (highest) to 7.
        priority: u8,
        /// `FLAG_FIN`, `FLAG_UNIDIRECTIONAL`.
        flags: u8,
        /// Its headers.
        headers: Headers,
    },
    /// Accepts a stream.
    SynReply {
        /// The stream.
        stream_id: u32,
        /// `FLAG_FIN`.
        flags: u8,
        /// Its headers.
        headers: Headers,
    },
    /// Ends a stream abnormally.
    RstStream {
        /// The stream.
        stream_id: u32,
        /// Why (see [`rst`]).
        status: u32,
    },
    /// Connection settings.
    Settings {
        /// `FLAG_SETTINGS_CLEAR_SETTINGS`.
        flags: u8,
        /// The settings.
        entries: Vec<Setting>,
    },
    /// A liveness check; the receiver echoes a ping its peer started.
    Ping {
        /// Odd from the client, even from the server.
        id: u32,
    },
    /// The sender opens no more streams.
    GoAway {
        /// The last stream it accepted.
        last_good: u32,
        /// 0 OK, 1 protocol error, 2 internal error.
        status: u32,
    },
    /// More headers for a stream.
    Headers {
        /// The stream.
        stream_id: u32,
        /// `FLAG_FIN`.
        flags: u8,
        /// The headers.
        headers: Headers,
    },
    /// Flow control credit (spdystream neither sends nor needs it).
    WindowUpdate {
        /// The stream.
        stream_id: u32,
        /// Bytes of credit.
        delta: u32,
    },
    /// Stream payload.
    Data {
        /// The stream.
        stream_id: u32,
        /// `FLAG_FIN`.
        flags: u8,
        /// The payload.
        data: Bytes,
    },
    /// A control frame of a type SPDY/3.1 does not define; skipped.
    Unknown {
        /// Its type.
        kind: u16,
    },
}

/// Reads frames of one direction of a connection.
#[derive(Default)]
pub struct FrameDecoder {
    headers: HeaderDecoder,
}

/// Writes frames of one direction of a connection.
#[derive(Default)]
pub struct FrameEncoder {
    headers: HeaderEncoder,
}

fn protocol(message: impl std::fmt::Display) -> io::Error {
    protocol_error(message)
}

/// A stream id with its reserved top bit cleared; 0 is never a stream.
fn stream_id(payload: &mut Bytes, frame: &str) -> Result<u32, io::Error> {
    let id = payload.get_u32() & 0x7fff_ffff;
    if id == 0 {
        return Err(protocol(format!("{frame} for stream 0")));
    }
    Ok(id)
}

impl FrameDecoder {
    fn control(&mut self, kind: u16, flags: u8, mut p: Bytes) -> Result<Frame, io::Error> {
        let need = |n: usize, exact: bool, name: &str| {
            let ok = if exact { p.len() == n } else { p.len() >= n };
            if ok {
                Ok(())
            } else {
                Err(protocol(format!("{name} frame of {} bytes", p.len())))
            }
        };
        Ok(match kind {
            SYN_STREAM => {
                need(10, false, "SYN_STREAM")?;
                let stream_id = stream_id(&mut p, "SYN_STREAM")?;
                let associated = p.get_u32() & 0x7fff_ffff;
                let priority = p.get_u8() >> 5;
                let _slot = p.get_u8();
                let headers = self.headers.decode(&p)?;
                Frame::SynStream {
                    stream_id,
                    associated,
                    priority,
                    flags,
                    headers,
                }
            }
            SYN_REPLY | HEADERS => {
                need(4, false, "SYN_REPLY or HEADERS")?;
                let stream_id = stream_id(&mut p, "SYN_REPLY or HEADERS")?;
                let headers = self.headers.decode(&p)?;
                if kind == SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        flags,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        flags,
                        headers,
                    }
                }
            }
            RST_STREAM => {
                need(8, true, "RST_STREAM")?;
                let stream_id = stream_id(&mut p, "RST_STREAM")?;
                Frame::RstStream {
                    stream_id,
                    status: p.get_u32(),
                }
            }
            SETTINGS => {
                need(4, false, "SETTINGS")?;
                let count = p.get_u32() as usize;
                if p.len() != count.saturating_mul(8) {
                    return Err(protocol(format!(
                        "SETTINGS frame announces {count} entries in {} bytes",
                        p.len()
                    )));
                }
                let entries = (0..count)
                    .map(|_| {
                        let word = p.get_u32();
                        Setting {
                            flags: (word >> 24) as u8,
                            id: word & 0x00ff_ffff,
                            value: p.get_u32(),
                        }
                    })
                    .collect();
                Frame::Settings { flags, entries }
            }
            PING => {
                need(4, true, "PING")?;
                Frame::Ping { id: p.get_u32() }
            }
            GOAWAY => {
                need(8, true, "GOAWAY")?;
                Frame::GoAway {
                    last_good: p.get_u32() & 0x7fff_ffff,
                    status: p.get_u32(),
                }
            }
            WINDOW_UPDATE => {
                need(8, true, "WINDOW_UPDATE")?;
                Frame::WindowUpdate {
                    stream_id: p.get_u32() & 0x7fff_ffff,
                    delta: p.get_u32() & 0x7fff_ffff,
                }
            }
            kind => Frame::Unknown { kind },
        })
    }
}

impl Decoder for FrameDecoder {
    type Item = Frame;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, io::Error> {
        if src.len() < 8 {
            return Ok(None);
        }
        let word = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        let flags = src[4];
        let length = u32::from_be_bytes([0, src[5], src[6], src[7]]) as usize;
        if src.len() < 8 + length {
            src.reserve(8 + length - src.len());
            return Ok(None);
        }
        src.advance(8);
        let payload = src.split_to(length).freeze();
        if word & 0x8000_0000 == 0 {
            let stream_id = word & 0x7fff_ffff;
            if stream_id == 0 {
                return Err(protocol("DATA frame for stream 0"));
            }
            return Ok(Some(Frame::Data {
                stream_id,
                flags,
                data: payload,
            }));
        }
        let version = ((word >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(protocol(format!(
                "SPDY version {version}; only 3 is spoken"
            )));
        }
        self.control((word & 0xffff) as u16, flags, payload)
            .map(Some)
    }
}

impl FrameEncoder {
    /// A SYN_REPLY or HEADERS frame: the stream id, then the compressed block.
    fn stream_headers(
        &mut self,
        dst: &mut BytesMut,
        kind: u16,
        stream_id: u32,
        flags: u8,
        headers: &Headers,
    ) -> Result<(), io::Error> {
        let block = self.headers.encode(headers)?;
        control_header(dst, kind, flags, block.len() + 4);
        dst.put_u32(stream_id);
        dst.put_slice(&block);
        Ok(())
    }
}

fn control_header(dst: &mut BytesMut, kind: u16, flags: u8, length: usize) {
    dst.put_u16(0x8000 | VERSION);
    dst.put_u16(kind);
    dst.put_u32(u32::from(flags) << 24 | length as u32);
}

impl Encoder<Frame> for FrameEncoder {
    type Error = io::Error;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), io::Error> {
        match frame {
            Frame::SynStream {
                stream_id,
                associated,
                priority,
                flags,
                headers,
            } => {
                let block = self.headers.encode(&headers)?;
                control_header(dst, SYN_STREAM, flags, block.len() + 10);
                dst.put_u32(stream_id);
                dst.put_u32(associated);
                dst.put_u8(priority << 5);
                dst.put_u8(0);
                dst.put_slice(&block);
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            } => self.stream_headers(dst, SYN_REPLY, stream_id, flags, &headers)?,
            Frame::Headers {
                stream_id,
                flags,
                headers,
            } => self.stream_headers(dst, HEADERS, stream_id, flags, &headers)?,
            Frame::RstStream { stream_id, status } => {
                control_header(dst, RST_STREAM, 0, 8);
                dst.put_u32(stream_id);
                dst.put_u32(status);
            }
            Frame::Settings { flags, entries } => {
                control_header(dst, SETTINGS, flags, 4 + 8 * entries.len());
                dst.put_u32(entries.len() as u32);
                for entry in entries {
                    dst.put_u32(u32::from(entry.flags) << 24 | entry.id);
                    dst.put_u32(entry.value);
                }
            }
            Frame::Ping { id } => {
                control_header(dst, PING, 0, 4);
                dst.put_u32(id);
            }
            Frame::GoAway { last_good, status } => {
                control_header(dst, GOAWAY, 0, 8);
                dst.put_u32(last_good);
                dst.put_u32(status);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control_header(dst, WINDOW_UPDATE, 0, 8);
                dst.put_u32(stream_id);
                dst.put_u32(delta);
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if data.len() > MAX_PAYLOAD {
                    return Err(protocol(format!("DATA frame of {} bytes", data.len())));
                }
                dst.put_u32(stream_id & 0x7fff_ffff);
                dst.put_u32(u32::from(flags) << 24 | data.len() as u32);
                dst.put_slice(&data);
            }
            Frame::Unknown { kind } => {
                return Err(protocol(format!("cannot send control frame type {kind}")))
            }
        }
        Ok(())
    }
}
