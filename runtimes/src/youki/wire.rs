//! Framing of the supervisor protocol (`proto/supervisor.proto`): each message is a
//! 4-byte big-endian length and then the prost-encoded message. Shared by the agent's
//! client and the supervisor.

use std::io::{self, Read, Write};

use prost::Message;

/// The largest frame either side accepts: an exec's output (capped at
/// [`MAX_EXEC_OUTPUT`] per stream) plus headroom. A larger length prefix is a protocol
/// error, never an allocation.
pub const MAX_FRAME: u32 = 3 * MAX_EXEC_OUTPUT as u32;

/// How much of each stream of an exec is kept (the rest is dropped).
pub const MAX_EXEC_OUTPUT: usize = 16 << 20;

/// Writes `msg` as one frame (a single `write_all` so a reader never sees half a header).
pub fn write_msg(w: &mut impl Write, msg: &impl Message) -> io::Result<()> {
    let len = msg.encoded_len();
    if len > MAX_FRAME as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("message of {len} bytes exceeds the {MAX_FRAME}-byte frame limit"),
        ));
    }
    let mut buf = Vec::with_capacity(4 + len);
    buf.extend_from_slice(&(len as u32).to_be_bytes());
    msg.encode(&mut buf)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    w.write_all(&buf)?;
    w.flush()
}

/// Reads one frame and decodes it as `M`.
pub fn read_msg<M: Message + Default>(r: &mut impl Read) -> io::Result<M> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len);
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the {MAX_FRAME}-byte limit"),
        ));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body)?;
    M::decode(body.as_slice()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use berth_proto::supervisor::{request, Exec, Request};

    use super::*;

    fn exec_request() -> Request {
        Request {
            kind: Some(request::Kind::Exec(Exec {
                id: "web.default-app-0-on-n1".into(),
                args: vec!["sh".into(), "-c".into(), "echo hi".into()],
                timeout_ms: 1500,
                uid: 65534,
                gid: 65534,
                additional_gids: vec![1, 2],
                cwd: "/".into(),
            })),
        }
    }

    #[test]
    fn a_message_survives_the_round_trip() {
        let mut buf = Vec::new();
        write_msg(&mut buf, &exec_request()).unwrap();
        let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
        assert_eq!(
            len,
            buf.len() - 4,
            "the prefix is the body length, big-endian"
        );
        let back: Request = read_msg(&mut buf.as_slice()).unwrap();
        assert_eq!(back, exec_request());
    }

    #[test]
    fn two_frames_in_a_row_are_read_one_at_a_time() {
        let mut buf = Vec::new();
        write_msg(&mut buf, &exec_request()).unwrap();
        write_msg(&mut buf, &Request::default()).unwrap();
        let mut r = buf.as_slice();
        assert_eq!(read_msg::<Request>(&mut r).unwrap(), exec_request());
        assert_eq!(read_msg::<Request>(&mut r).unwrap(), Request::default());
        assert!(r.is_empty());
    }

    #[test]
    fn an_oversized_length_is_refused_without_allocating() {
        let mut buf = (MAX_FRAME + 1).to_be_bytes().to_vec();
        buf.extend_from_slice(b"tiny");
        let err = read_msg::<Request>(&mut buf.as_slice()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("exceeds"), "{err}");
    }

    #[test]
    fn a_truncated_frame_is_an_error() {
        let mut buf = Vec::new();
        write_msg(&mut buf, &exec_request()).unwrap();
        buf.truncate(buf.len() - 3);
        let err = read_msg::<Request>(&mut buf.as_slice()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn garbage_is_invalid_data() {
        let mut buf = 3u32.to_be_bytes().to_vec();
        buf.extend_from_slice(&[0xff, 0xff, 0xff]);
        let err = read_msg::<Request>(&mut buf.as_slice()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
