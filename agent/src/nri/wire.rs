//! NRI's two layers of framing on a plugin's unix connection, as pure functions:
//!
//! - the multiplexer (containerd/nri `pkg/net/multiplex`): frames of `[conn id u32
//!   BE][length u32 BE][payload]` carry the bytes of logical connections. Connection
//!   1 is the plugin's ttrpc service (berth is the client), connection 2 the runtime's
//!   (the plugin is the client). A logical connection is a byte stream: a frame may
//!   hold part of a ttrpc message, or several.
//! - ttrpc: `[length u32 BE][stream id u32 BE][type u8][flags u8][payload]`, payload
//!   at most 4 MiB.
//!
//! Every length is checked before anything is allocated for it: a plugin can make
//! berth buffer at most one message per logical connection.

use super::NriError;

/// The plugin's ttrpc service: berth calls it.
pub const PLUGIN_CONN: u32 = 1;
/// The runtime's ttrpc service: the plugin calls it.
pub const RUNTIME_CONN: u32 = 2;
/// A multiplexer frame header.
pub const MUX_HEADER: usize = 8;
/// A ttrpc message header.
pub const TTRPC_HEADER: usize = 10;
/// ttrpc's largest payload.
pub const MAX_MESSAGE: usize = 4 << 20;
/// The multiplexer's largest frame payload: one whole ttrpc message.
pub const MAX_FRAME: usize = TTRPC_HEADER + MAX_MESSAGE;

/// A ttrpc request.
pub const TYPE_REQUEST: u8 = 1;
/// A ttrpc response.
pub const TYPE_RESPONSE: u8 = 2;

/// One ttrpc message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its stream (odd: opened by the client).
    pub stream: u32,
    /// Request, response or data.
    pub kind: u8,
    /// Type-specific flags (0 for unary calls).
    pub flags: u8,
    /// The encoded request or response.
    pub payload: Vec<u8>,
}

/// A multiplexer frame header: its logical connection and payload length. A length
/// over [`MAX_FRAME`] or a connection other than 1 and 2 is malformed.
pub fn frame_header(header: [u8; MUX_HEADER]) -> Result<(u32, usize), NriError> {
    let conn = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if conn != PLUGIN_CONN && conn != RUNTIME_CONN {
        return Err(NriError::Protocol(format!(
            "multiplexer frame for connection {conn} (only 1 and 2 exist)"
        )));
    }
    if len > MAX_FRAME {
        return Err(NriError::Protocol(format!(
            "multiplexer frame of {len} bytes (at most {MAX_FRAME})"
        )));
    }
    Ok((conn, len))
}

/// `message` as the bytes of one multiplexer frame on connection `conn`.
pub fn encode(conn: u32, message: &Message) -> Result<Vec<u8>, NriError> {
    if message.payload.len() > MAX_MESSAGE {
        return Err(NriError::Protocol(format!(
            "ttrpc message of {} bytes (at most {MAX_MESSAGE})",
            message.payload.len()
        )));
    }
    let inner = TTRPC_HEADER + message.payload.len();
    let mut out = Vec::with_capacity(MUX_HEADER + inner);
    out.extend_from_slice(&conn.to_be_bytes());
    out.extend_from_slice(&(inner as u32).to_be_bytes());
    out.extend_from_slice(&(message.payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&message.stream.to_be_bytes());
    out.push(message.kind);
    out.push(message.flags);
    out.extend_from_slice(&message.payload);
    Ok(out)
}

/// The byte stream of one logical connection, cut into ttrpc messages.
#[derive(Debug, Default)]
pub struct Stream {
    buf: Vec<u8>,
}

impl Stream {
    /// Adds a frame's payload and returns the messages it completed. A message
    /// header announcing more than [`MAX_MESSAGE`] is malformed.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Message>, NriError> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        let mut at = 0;
        while self.buf.len() - at >= TTRPC_HEADER {
            let h = &self.buf[at..at + TTRPC_HEADER];
            let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
            if len > MAX_MESSAGE {
                return Err(NriError::Protocol(format!(
                    "ttrpc message of {len} bytes (at most {MAX_MESSAGE})"
                )));
            }
            if self.buf.len() - at < TTRPC_HEADER + len {
                break;
            }
            out.push(Message {
                stream: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                kind: h[8],
                flags: h[9],
                payload: self.buf[at + TTRPC_HEADER..at + TTRPC_HEADER + len].to_vec(),
            });
            at += TTRPC_HEADER + len;
        }
        self.buf.drain(..at);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(stream: u32, payload: &[u8]) -> Message {
        Message {
            stream,
            kind: TYPE_REQUEST,
            flags: 0,
            payload: payload.to_vec(),
        }
    }

    #[test]
    fn a_message_round_trips_through_a_frame() {
        let m = message(3, b"hello");
        let bytes = encode(RUNTIME_CONN, &m).unwrap();
        assert_eq!(bytes.len(), MUX_HEADER + TTRPC_HEADER + 5);
        let (conn, len) = frame_header(bytes[..8].try_into().unwrap()).unwrap();
        assert_eq!((conn, len), (RUNTIME_CONN, TTRPC_HEADER + 5));
        // The ttrpc header as ttrpc writes it: length, stream, type, flags.
        assert_eq!(&bytes[8..18], &[0, 0, 0, 5, 0, 0, 0, 3, 1, 0]);
        let got = Stream::default().push(&bytes[8..]).unwrap();
        assert_eq!(got, [m]);
    }

    #[test]
    fn messages_split_across_frames_and_packed_in_one_are_cut_right() {
        let a = encode(PLUGIN_CONN, &message(1, b"first")).unwrap();
        let b = encode(PLUGIN_CONN, &message(3, b"")).unwrap();
        let mut stream_bytes = a[8..].to_vec();
        stream_bytes.extend_from_slice(&b[8..]);
        let mut s = Stream::default();
        // Byte by byte: nothing until a message is whole.
        let mut got = Vec::new();
        for byte in &stream_bytes {
            got.extend(s.push(std::slice::from_ref(byte)).unwrap());
        }
        assert_eq!(got, [message(1, b"first"), message(3, b"")]);
        // All at once.
        let got = Stream::default().push(&stream_bytes).unwrap();
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn malformed_headers_are_refused_before_allocating() {
        let mut h = [0u8; 8];
        h[3] = 7;
        let err = frame_header(h).unwrap_err();
        assert!(err.to_string().contains("connection 7"), "{err}");
        let mut h = [0u8; 8];
        h[3] = 1;
        h[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(frame_header(h).is_err());
        let mut h = [0u8; 8];
        h[3] = 0;
        assert!(frame_header(h).is_err(), "connection 0 is reserved");
        // A ttrpc header claiming 4 GiB.
        let mut s = Stream::default();
        let err = s
            .push(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 1, 0])
            .unwrap_err();
        assert!(err.to_string().contains("at most"), "{err}");
        let big = message(1, &vec![0; MAX_MESSAGE + 1]);
        assert!(encode(PLUGIN_CONN, &big).is_err());
    }
}
