//! The supervisor's low-level pieces: non-blocking pipes, the SIGCHLD self-pipe,
//! pidfds and wait statuses.

use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::{pipe2, Pid};

/// The read end of a child's stdout or stderr (or a terminal's master), with what was
/// read but not yet used.
pub struct Pipe {
    /// The read end (non-blocking).
    pub fd: OwnedFd,
    /// Bytes read and not yet consumed.
    pub pending: Vec<u8>,
}

/// What a read of a pipe found.
#[derive(Debug, PartialEq, Eq)]
pub enum Drained {
    /// Nothing more for now.
    Open,
    /// The writer side is closed.
    Eof,
}

impl Pipe {
    /// A read end that is non-blocking already (or a terminal master).
    pub fn new(fd: OwnedFd) -> Pipe {
        Pipe {
            fd,
            pending: Vec::new(),
        }
    }

    /// Reads what is available into `pending`, up to `cap` bytes held (the rest is read
    /// and dropped, so a chatty writer never blocks on a full pipe).
    pub fn drain(&mut self, cap: usize) -> Drained {
        let mut buf = [0u8; 8192];
        loop {
            match nix::unistd::read(self.fd.as_raw_fd(), &mut buf) {
                Ok(0) => return Drained::Eof,
                Ok(n) => {
                    let room = cap.saturating_sub(self.pending.len()).min(n);
                    self.pending.extend_from_slice(&buf[..room]);
                }
                Err(Errno::EAGAIN) => return Drained::Open,
                Err(Errno::EINTR) => continue,
                Err(_) => return Drained::Eof,
            }
        }
    }
}

/// Sets O_NONBLOCK on `fd`'s open file description.
pub fn set_nonblocking(fd: RawFd) -> nix::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// A pipe whose read end is non-blocking (ours) and write end blocking (the child's);
/// both close-on-exec (libcontainer dup2s the write end into the container).
pub fn pipe() -> nix::Result<(Pipe, OwnedFd)> {
    let (r, w) = pipe2(OFlag::O_CLOEXEC)?;
    set_nonblocking(r.as_raw_fd())?;
    Ok((
        Pipe {
            fd: r,
            pending: Vec::new(),
        },
        w,
    ))
}

/// Write end of the SIGCHLD self-pipe, for the async-signal-safe handler.
static SIGCHLD_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_sigchld(_: libc::c_int) {
    let fd = SIGCHLD_PIPE.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; a full pipe just drops the wake-up.
        unsafe { libc::write(fd, b"c".as_ptr().cast(), 1) };
    }
}

/// Installs the SIGCHLD handler and returns the pipe end that becomes readable when a
/// child changed state. `SA_RESTART`: libcontainer's blocking reads and waits in this
/// process must not fail with EINTR.
pub fn sigchld_pipe() -> nix::Result<OwnedFd> {
    let (r, w) = pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
    SIGCHLD_PIPE.store(w.into_raw_fd(), Ordering::Relaxed);
    let action = SigAction::new(
        SigHandler::Handler(on_sigchld),
        SaFlags::SA_RESTART | SaFlags::SA_NOCLDSTOP,
        SigSet::empty(),
    );
    // SAFETY: the handler only calls write(2).
    unsafe { sigaction(Signal::SIGCHLD, &action)? };
    Ok(r)
}

/// Empties the self-pipe.
pub fn drain_wakeups(fd: &OwnedFd) {
    let mut buf = [0u8; 64];
    while nix::unistd::read(fd.as_raw_fd(), &mut buf).is_ok_and(|n| n > 0) {}
}

/// A pidfd for `pid`, which must be our unreaped child so it names that process and
/// no later holder of the number.
pub fn pidfd_open(pid: Pid) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a descriptor the kernel just gave us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sends `signal` through `pidfd`. A process that exited but is not reaped yet
/// (ESRCH) counts as signalled: its exit is on its way.
pub fn pidfd_signal(pidfd: &OwnedFd, signal: i32) -> std::io::Result<()> {
    // SAFETY: plain syscall on a pidfd we own; no siginfo.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ESRCH) {
        Ok(())
    } else {
        Err(e)
    }
}

/// The exit code of a finished child (128 + n when killed by signal n), or `None` for
/// a status that is not an end (stopped, continued).
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, signal, _) => Some(128 + signal as i32),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        let pid = Pid::from_raw(1);
        assert_eq!(exit_code(WaitStatus::Exited(pid, 3)), Some(3));
        assert_eq!(
            exit_code(WaitStatus::Signaled(pid, Signal::SIGKILL, false)),
            Some(137)
        );
        assert_eq!(exit_code(WaitStatus::StillAlive), None);
    }

    #[test]
    fn a_pipe_drains_what_is_there_then_reports_eof() {
        let (mut pipe, w) = pipe().unwrap();
        let mut w = std::fs::File::from(w);
        w.write_all(b"hello").unwrap();
        assert_eq!(pipe.drain(1 << 20), Drained::Open);
        assert_eq!(pipe.pending, b"hello");
        drop(w);
        assert_eq!(pipe.drain(1 << 20), Drained::Eof);
    }

    #[test]
    fn drain_keeps_at_most_the_cap() {
        let (mut pipe, w) = pipe().unwrap();
        let mut w = std::fs::File::from(w);
        w.write_all(&[b'a'; 100]).unwrap();
        drop(w);
        assert_eq!(pipe.drain(10), Drained::Eof);
        assert_eq!(pipe.pending.len(), 10);
    }
}
