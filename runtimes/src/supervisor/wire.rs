//! Framing of the supervisor protocol (`proto/supervisor.proto`): each message is a
//! 4-byte big-endian length and then the prost-encoded message; a frame may carry file
//! descriptors (SCM_RIGHTS) with its first byte. Shared by the agent's client and the
//! supervisor.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The largest frame either side accepts: an exec's output (capped at
/// [`MAX_EXEC_OUTPUT`] per stream) plus headroom. A larger length prefix is a protocol
/// error, never an allocation.
pub const MAX_FRAME: u32 = 3 * MAX_EXEC_OUTPUT as u32;

/// How much of each stream of an exec is kept (the rest is dropped).
pub const MAX_EXEC_OUTPUT: usize = 16 << 20;

/// The most descriptors one frame carries (a session passes at most four).
pub const MAX_FDS: usize = 8;

/// `msg` as a frame: length prefix and body.
fn frame(msg: &impl Message) -> io::Result<Vec<u8>> {
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
    Ok(buf)
}

/// The body length a frame header announces, refused above [`MAX_FRAME`].
fn body_len(header: [u8; 4]) -> io::Result<usize> {
    let len = u32::from_be_bytes(header);
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the {MAX_FRAME}-byte limit"),
        ));
    }
    Ok(len as usize)
}

fn decode<M: Message + Default>(body: &[u8]) -> io::Result<M> {
    M::decode(body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Writes `msg` as one frame (a single `write_all` so a reader never sees half a header).
pub fn write_msg(w: &mut impl Write, msg: &impl Message) -> io::Result<()> {
    w.write_all(&frame(msg)?)?;
    w.flush()
}

/// Reads one frame and decodes it as `M`.
pub fn read_msg<M: Message + Default>(r: &mut impl Read) -> io::Result<M> {
    let mut header = [0u8; 4];
    r.read_exact(&mut header)?;
    let mut body = vec![0u8; body_len(header)?];
    r.read_exact(&mut body)?;
    decode(&body)
}

/// Writes `msg` as one frame with `fds` attached to its first byte. The descriptors
/// stay open here (the receiver gets copies).
pub fn write_msg_with_fds(
    conn: &mut UnixStream,
    msg: &impl Message,
    fds: &[RawFd],
) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} descriptors exceed the {MAX_FDS} a frame carries",
                fds.len()
            ),
        ));
    }
    let buf = frame(msg)?;
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    let sent = loop {
        match sendmsg::<()>(
            conn.as_raw_fd(),
            &[IoSlice::new(&buf)],
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other.map_err(io::Error::from)?,
        }
    };
    conn.write_all(&buf[sent..])
}

/// Reads one frame and the descriptors that came with it (close-on-exec).
pub fn read_msg_with_fds<M: Message + Default>(
    conn: &mut UnixStream,
) -> io::Result<(M, Vec<OwnedFd>)> {
    let mut header = [0u8; 4];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (got, fds) = loop {
        let mut iov = [IoSliceMut::new(&mut header)];
        match recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(msg) => {
                let mut fds = Vec::new();
                // ENOBUFS: truncated, more descriptors than a frame may carry.
                for cmsg in msg.cmsgs().map_err(io::Error::from)? {
                    if let ControlMessageOwned::ScmRights(raw) = cmsg {
                        // SAFETY: the kernel just installed these descriptors for us.
                        fds.extend(
                            raw.into_iter()
                                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                        );
                    }
                }
                break (msg.bytes, fds);
            }
        }
    };
    if got == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    conn.read_exact(&mut header[got..])?;
    let mut body = vec![0u8; body_len(header)?];
    conn.read_exact(&mut body)?;
    Ok((decode(&body)?, fds))
}

/// Reads one frame from an async stream (the agent's end of a session).
pub async fn read_msg_async<M: Message + Default>(
    r: &mut (impl AsyncRead + Unpin),
) -> io::Result<M> {
    let mut header = [0u8; 4];
    r.read_exact(&mut header).await?;
    let mut body = vec![0u8; body_len(header)?];
    r.read_exact(&mut body).await?;
    decode(&body)
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
    fn descriptors_travel_with_their_frame() {
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        write_msg_with_fds(&mut a, &exec_request(), &[r.as_raw_fd(), w.as_raw_fd()]).unwrap();
        drop((r, w));
        write_msg(&mut a, &Request::default()).unwrap();
        let (msg, fds) = read_msg_with_fds::<Request>(&mut b).unwrap();
        assert_eq!(msg, exec_request());
        assert_eq!(fds.len(), 2);
        // The received pair is the same pipe: bytes written to one come out of the other.
        std::fs::File::from(fds[1].try_clone().unwrap())
            .write_all(b"through")
            .unwrap();
        let mut got = [0u8; 7];
        std::fs::File::from(fds[0].try_clone().unwrap())
            .read_exact(&mut got)
            .unwrap();
        assert_eq!(&got, b"through");
        // The next frame carries none.
        let (next, none) = read_msg_with_fds::<Request>(&mut b).unwrap();
        assert_eq!(next, Request::default());
        assert!(none.is_empty());
    }

    #[tokio::test]
    async fn the_async_reader_reads_what_the_writer_wrote() {
        let mut buf = Vec::new();
        write_msg(&mut buf, &exec_request()).unwrap();
        let back: Request = read_msg_async(&mut buf.as_slice()).await.unwrap();
        assert_eq!(back, exec_request());
        buf.truncate(3);
        let err = read_msg_async::<Request>(&mut buf.as_slice())
            .await
            .unwrap_err();
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
