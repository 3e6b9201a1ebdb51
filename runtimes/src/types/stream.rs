//! Interactive streams of `Exec`, `Attach` and `PortForward`: what a backend hands the
//! agent's streaming server. Plain tokio byte streams; the server speaks SPDY or
//! WebSocket to the client and pumps bytes between the two, so a backend never sees
//! the wire protocols.

use std::fmt;

use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::error::Result;

/// Which standard streams a client wants, and whether it wants a terminal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StdioRequest {
    /// Allocate a terminal: stdout then carries the terminal's output and there is
    /// no separate stderr.
    pub tty: bool,
    /// The client sends input.
    pub stdin: bool,
    /// The client reads stdout.
    pub stdout: bool,
    /// The client reads stderr (never together with `tty`).
    pub stderr: bool,
}

/// An interactive `Exec`: a new process in a running container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecStreamRequest {
    /// The command and its arguments (not empty).
    pub cmd: Vec<String>,
    /// The streams wanted.
    pub stdio: StdioRequest,
}

/// An `Attach` to the main process of a running container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachRequest {
    /// The streams wanted; `tty` must match how the container was created.
    pub stdio: StdioRequest,
}

/// A terminal size in character cells.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TerminalSize {
    /// Columns.
    pub width: u16,
    /// Rows.
    pub height: u16,
}

/// A byte source of a session (a process's stdout or stderr).
pub type StreamReader = Box<dyn AsyncRead + Send + Unpin>;

/// A byte sink of a session (a process's stdin).
pub type StreamWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// Both directions of one connection (a forwarded port).
pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Duplex for T {}

/// A connection to a port inside a pod's network namespace.
pub type PortStream = Box<dyn Duplex>;

/// One running exec or attach, as the backend started it.
///
/// Each stream is present exactly when the request asked for it (`resize` when it
/// asked for a terminal). Dropping the session before `done` resolved means the
/// client went away: the backend then kills an exec'd process, and an attach
/// detaches (the container keeps running).
pub struct StreamSession {
    /// The process's stdin; shutting it down (or dropping it) is end-of-file for the
    /// process.
    pub stdin: Option<StreamWriter>,
    /// The process's stdout, or the terminal's output with a tty. Ends (EOF) when
    /// the process side closed it; a terminal's EIO after the process exited is EOF.
    pub stdout: Option<StreamReader>,
    /// The process's stderr; never with a tty.
    pub stderr: Option<StreamReader>,
    /// Where the server sends the client's terminal sizes.
    pub resize: Option<mpsc::Sender<TerminalSize>>,
    /// Resolves with the exit code when the process ended (exec: the exec'd process;
    /// attach: the container's main process). A process killed by signal N reports
    /// 128 + N, as a shell does.
    pub done: BoxFuture<'static, Result<i32>>,
}

impl fmt::Debug for StreamSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamSession")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("resize", &self.resize.is_some())
            .finish_non_exhaustive()
    }
}
