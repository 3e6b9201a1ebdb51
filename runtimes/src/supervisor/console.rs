//! Terminals: libcontainer makes a process's pty inside the container (from the
//! container's own devpts, so `tty` names a device the container sees) and sends the
//! master over a "console socket" it connects to while the process starts. The
//! supervisor listens on a fresh socket for each such process and takes the master
//! once libcontainer's `build()` returned.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

/// How long the master may take to arrive after `build()` returned (it was sent
/// before the process exec'd, so it is there already unless something broke).
const ARRIVAL: Duration = Duration::from_secs(5);

/// Tells the sockets of one supervisor apart.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// A listening console socket; removed when dropped.
pub struct Console {
    path: PathBuf,
    listener: UnixListener,
}

impl Console {
    /// Binds a new console socket in `dir`. Bound by its short name from inside `dir`
    /// (a unix socket address holds 107 bytes; the supervisor has one thread, so the
    /// `chdir` is safe); libcontainer connects through a symlink to `path`.
    pub fn bind(dir: &Path) -> io::Result<Console> {
        let name = format!(
            "console-{}-{}.sock",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(&name);
        let _ = std::fs::remove_file(&path);
        let bound = std::env::set_current_dir(dir).and_then(|()| UnixListener::bind(&name));
        let _ = std::env::set_current_dir("/");
        let listener = bound?;
        listener.set_nonblocking(true)?;
        Ok(Console { path, listener })
    }

    /// The socket's path, for libcontainer's `with_console_socket`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The terminal master the started process sent. Non-blocking from here on.
    pub fn receive(&self) -> io::Result<OwnedFd> {
        let mut fds = [PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
        let wait = PollTimeout::try_from(ARRIVAL.as_millis() as i32).unwrap_or(PollTimeout::MAX);
        if poll(&mut fds, wait)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the container's process never connected to the console socket",
            ));
        }
        let (conn, _) = self.listener.accept()?;
        conn.set_nonblocking(false)?;
        conn.set_read_timeout(Some(ARRIVAL))?;
        let mut name = [0u8; 64];
        let mut space = nix::cmsg_space!([RawFd; 2]);
        let mut iov = [IoSliceMut::new(&mut name)];
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        let mut received = Vec::new();
        for cmsg in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(raw) = cmsg {
                // SAFETY: the kernel just installed these descriptors for us.
                received.extend(
                    raw.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        let master = received.into_iter().next().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "the console socket carried no terminal",
            )
        })?;
        super::io::set_nonblocking(master.as_raw_fd())?;
        Ok(master)
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use std::io::IoSlice;
    use std::os::unix::net::UnixStream;

    use nix::sys::socket::{sendmsg, ControlMessage};

    use super::*;

    #[test]
    fn a_master_sent_as_libcontainer_sends_it_is_received() {
        let dir = tempfile::tempdir().unwrap();
        let console = Console::bind(dir.path()).unwrap();
        let path = console.path().to_path_buf();
        assert!(path.starts_with(dir.path()));
        // What libcontainer's tty::setup_console does from the new process.
        let pty = nix::pty::openpty(None, None).unwrap();
        let conn = UnixStream::connect(&path).unwrap();
        let fds = [pty.master.as_raw_fd()];
        sendmsg::<()>(
            conn.as_raw_fd(),
            &[IoSlice::new(b"/dev/ptmx")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        let master = console.receive().unwrap();
        // The received master drives the same terminal: its output reaches the slave.
        nix::unistd::write(&master, b"x\n").unwrap();
        let mut buf = [0u8; 2];
        nix::unistd::read(pty.slave.as_raw_fd(), &mut buf).unwrap();
        assert_eq!(&buf, b"x\n");
        drop(console);
        assert!(!path.exists(), "the socket is removed");
    }

    #[test]
    fn nobody_connecting_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let console = Console::bind(dir.path()).unwrap();
        let conn = UnixStream::connect(console.path()).unwrap();
        drop(conn);
        let err = console.receive().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }
}
