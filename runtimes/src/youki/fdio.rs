//! The agent's ends of a session's descriptors (pipe ends, terminal masters the
//! supervisor passed over its socket) as tokio streams, and terminal resizing.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

use crate::types::TerminalSize;

fn nonblocking(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    let raw = fd.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own, with integer arguments.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a valid descriptor owned by the AsyncFd from here on; nothing
    // else closes or replaces it while it is registered.
    Ok(unsafe { AsyncFd::register(fd) }?)
}

/// The read side: a pipe's read end or a terminal master. A terminal's EIO (every
/// process holding its other side has gone) is end-of-file.
pub struct FdReader(AsyncFd<OwnedFd>);

impl FdReader {
    /// Reads `fd` (made non-blocking; must be called inside a tokio runtime).
    pub fn new(fd: OwnedFd) -> io::Result<FdReader> {
        nonblocking(fd).map(FdReader)
    }
}

impl AsyncRead for FdReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| {
                // SAFETY: reads into the unfilled part of `buf`, at most its length.
                let n = unsafe {
                    libc::read(fd.as_raw_fd(), unfilled.as_mut_ptr().cast(), unfilled.len())
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

/// The write side: a pipe's write end or a terminal master. Shutting it down closes
/// the descriptor (end-of-file for a pipe's reader).
pub struct FdWriter(Option<AsyncFd<OwnedFd>>);

impl FdWriter {
    /// Writes `fd` (made non-blocking; must be called inside a tokio runtime).
    pub fn new(fd: OwnedFd) -> io::Result<FdWriter> {
        nonblocking(fd).map(|fd| FdWriter(Some(fd)))
    }
}

impl AsyncWrite for FdWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let Some(fd) = &self.0 else {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        };
        loop {
            let mut guard = ready!(fd.poll_write_ready(cx))?;
            match guard.try_io(|fd| {
                // SAFETY: writes at most `data.len()` bytes from `data`.
                let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0 = None;
        Poll::Ready(Ok(()))
    }
}

/// Sets the window size of the terminal whose master is `fd`; the kernel sends the
/// terminal's foreground process group SIGWINCH.
pub fn set_size(fd: &OwnedFd, size: TerminalSize) -> io::Result<()> {
    let winsize = libc::winsize {
        ws_row: size.height,
        ws_col: size.width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &winsize) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Where a session's terminal sizes go: a task that applies each to `master` until
/// the sender is dropped (then the master is closed).
pub fn resizer(master: OwnedFd) -> mpsc::Sender<TerminalSize> {
    let (sizes, mut received) = mpsc::channel::<TerminalSize>(8);
    tokio::spawn(async move {
        while let Some(size) = received.recv().await {
            if let Err(e) = set_size(&master, size) {
                tracing::debug!(error = %e, "resizing a session's terminal");
            }
        }
    });
    sizes
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_pipe_carries_bytes_and_shutdown_is_end_of_file() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let (mut reader, mut writer) = (FdReader::new(r).unwrap(), FdWriter::new(w).unwrap());
        writer.write_all(b"over the pipe").await.unwrap();
        writer.shutdown().await.unwrap();
        let mut got = Vec::new();
        reader.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"over the pipe");
        assert!(writer.write_all(b"more").await.is_err(), "closed");
    }

    #[tokio::test]
    async fn a_terminal_whose_other_side_closed_ends_without_an_error() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let mut master = FdReader::new(pty.master.try_clone().unwrap()).unwrap();
        nix::unistd::write(&pty.slave, b"bye\n").unwrap();
        drop(pty.slave);
        let mut got = Vec::new();
        master.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"bye\r\n", "through the line discipline");
    }

    #[tokio::test]
    async fn resizes_reach_the_terminal() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let sizes = resizer(pty.master.try_clone().unwrap());
        let size = TerminalSize {
            width: 132,
            height: 50,
        };
        sizes.send(size).await.unwrap();
        let mut seen = None;
        for _ in 0..100 {
            // SAFETY: winsize is plain old data; all-zero is a valid value.
            let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
            // SAFETY: TIOCGWINSZ writes one winsize into `ws`.
            unsafe { libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
            if ws.ws_col == 132 {
                seen = Some((ws.ws_row, ws.ws_col));
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(seen, Some((50, 132)));
    }
}
