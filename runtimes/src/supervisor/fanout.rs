//! Attached clients: the container's output goes to the CRI log and to every client
//! attached at the time, each through a pipe of its own whose read end the agent holds.
//! Writes never block the supervisor: what a pipe cannot take yet waits in memory, up to
//! [`MAX_BEHIND`]; a client further behind than that is cut off (its session ends)
//! rather than slowing the pod or growing without bound.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use nix::errno::Errno;

use super::io::set_nonblocking;

/// How much output one client may fall behind before it is cut off.
pub const MAX_BEHIND: usize = 1 << 20;

/// Pipe capacity asked for (the kernel's default is 64 KiB); a larger pipe lets a
/// client that reads in bursts keep up without the supervisor queueing.
const PIPE_SIZE: i32 = 1 << 20;

/// The supervisor's end of one output stream of one client.
pub struct Sink {
    fd: OwnedFd,
    pending: Vec<u8>,
}

impl Sink {
    /// The write end `fd` of a pipe the client reads.
    pub fn new(fd: OwnedFd) -> std::io::Result<Sink> {
        set_nonblocking(fd.as_raw_fd())?;
        // Best effort: the default size works too, only with more queueing here.
        let _ = nix::fcntl::fcntl(
            fd.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE),
        );
        Ok(Sink {
            fd,
            pending: Vec::new(),
        })
    }

    /// The descriptor, to poll for writability.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Queues `data` behind what waits and writes what the pipe takes. False when the
    /// client is gone or too far behind.
    pub fn push(&mut self, data: &[u8]) -> bool {
        if self.pending.len() + data.len() > MAX_BEHIND {
            return false;
        }
        self.pending.extend_from_slice(data);
        self.flush()
    }

    /// Writes what waits, as far as the pipe takes it. False when the client is gone.
    pub fn flush(&mut self) -> bool {
        while !self.pending.is_empty() {
            match nix::unistd::write(&self.fd, &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return true,
                // EPIPE: the agent closed its end.
                Err(_) => return false,
            }
        }
        true
    }

    /// True while output waits for the pipe.
    pub fn behind(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// One client attached to a container.
pub struct Attached {
    /// The client's connection: it hangs up to detach; the supervisor sends `Exit` on
    /// it once the container ended and the output is delivered.
    pub conn: UnixStream,
    /// Its stdout and stderr; `None` for a stream it did not ask for.
    pub out: [Option<Sink>; 2],
    /// Cut off (gone or too far behind): dropped at the end of the round.
    pub broken: bool,
    /// Set once the container ended: until when its remaining output may take (the
    /// exit is sent after it).
    pub ending: Option<Instant>,
}

impl Attached {
    /// A client on `conn` reading the given streams.
    pub fn new(conn: UnixStream, out: [Option<Sink>; 2]) -> Attached {
        Attached {
            conn,
            out,
            broken: false,
            ending: None,
        }
    }

    /// Hands `data` of stream `i` (0 stdout, 1 stderr) to the client.
    pub fn feed(&mut self, i: usize, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if let Some(sink) = &mut self.out[i] {
            if !sink.push(data) {
                self.broken = true;
            }
        }
    }

    /// Writes what waits, after poll said a pipe takes more.
    pub fn flush(&mut self) {
        for sink in self.out.iter_mut().flatten() {
            if !sink.flush() {
                self.broken = true;
            }
        }
    }

    /// True while some of its output waits.
    pub fn behind(&self) -> bool {
        self.out.iter().flatten().any(Sink::behind)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn pipe() -> (std::fs::File, Sink) {
        let (r, w) = nix::unistd::pipe().unwrap();
        (std::fs::File::from(r), Sink::new(w).unwrap())
    }

    #[test]
    fn output_reaches_the_client_in_order() {
        let (mut r, mut sink) = pipe();
        assert!(sink.push(b"hello "));
        assert!(sink.push(b"world"));
        assert!(!sink.behind());
        let mut buf = [0u8; 11];
        r.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello world");
    }

    #[test]
    fn a_slow_client_is_queued_then_cut_off() {
        let (mut r, mut sink) = pipe();
        let chunk = vec![b'x'; 64 * 1024];
        let mut pushed = 0;
        // Fill the pipe and the queue; nobody reads.
        while sink.push(&chunk) {
            pushed += chunk.len();
            assert!(pushed < 64 << 20, "never cut off");
        }
        assert!(sink.behind());
        assert!(pushed >= MAX_BEHIND, "queued at least MAX_BEHIND: {pushed}");
        // What was accepted is delivered in order once the client reads.
        let mut got = vec![0u8; 4096];
        r.read_exact(&mut got).unwrap();
        assert!(got.iter().all(|&b| b == b'x'));
    }

    #[test]
    fn a_client_that_closed_its_end_is_broken() {
        let (r, sink) = pipe();
        drop(r);
        let mut attached = Attached::new(UnixStream::pair().unwrap().0, [Some(sink), None]);
        attached.feed(0, b"anyone?");
        assert!(attached.broken);
        // A stream the client did not ask for is no failure.
        let (_r2, sink2) = pipe();
        let mut other = Attached::new(UnixStream::pair().unwrap().0, [Some(sink2), None]);
        other.feed(1, b"stderr nobody wants");
        assert!(!other.broken);
    }
}
