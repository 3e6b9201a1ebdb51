//! The agent's side of the supervisor protocol: starting a pod's supervisor and
//! calling it. Blocking (a local socket round trip, ~0.1 ms; creates and execs take
//! longer); the backend runs these calls on tokio's blocking pool.
//!
//! Every call goes through a [`Link`], the backend's one edge to its supervisors, as
//! [`super::host::Host`] is its edge to the host: [`Socket`] is the real one (a unix
//! socket per pod), the unit tests' fake plays supervisors that die where told.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use berth_proto::supervisor::{error::Code, reply, request, Pong, Reply, Request};

use crate::error::Error;
use crate::supervisor;
use crate::supervisor::wire;

/// How long a plain request may take (create and delete do real work).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a call failed.
#[derive(Debug)]
pub enum CallError {
    /// Nobody listens on the socket: the supervisor is not running.
    Gone,
    /// The socket could not be talked to (or the answer did not come in time).
    Io(io::Error),
    /// The supervisor refused: its code and message.
    Refused(Code, String),
}

impl CallError {
    /// This failure as the crate's error, about the `kind` object `id`.
    pub fn into_error(self, kind: &'static str, id: &str) -> Error {
        match self {
            CallError::Gone => Error::FailedPrecondition(format!(
                "{kind} {id}: the pod's supervisor is not running (the pod must be recreated)"
            )),
            CallError::Io(e) => {
                Error::io(format!("{kind} {id}: talking to the pod's supervisor"), e)
            }
            CallError::Refused(Code::NotFound, _) => Error::NotFound {
                kind,
                id: id.to_string(),
            },
            CallError::Refused(Code::AlreadyExists, _) => Error::AlreadyExists {
                kind,
                id: id.to_string(),
            },
            CallError::Refused(Code::FailedPrecondition, m) => {
                Error::FailedPrecondition(format!("{kind} {id}: {m}"))
            }
            CallError::Refused(Code::Invalid, m) => Error::InvalidSpec(format!("{kind} {id}: {m}")),
            CallError::Refused(Code::Internal, m) => {
                Error::backend("youki", format!("{kind} {id}: {m}"))
            }
        }
    }
}

/// What a session call returns: the reply, the descriptors passed with it, and the
/// connection the session keeps.
pub type Session = (reply::Kind, Vec<OwnedFd>, UnixStream);

/// How the backend reaches the pods' supervisors: the only way it talks to them.
pub trait Link: Send + Sync {
    /// Sends `request` to the supervisor listening on `socket` and waits up to
    /// `timeout` for the answer.
    fn call(
        &self,
        socket: &Path,
        request: request::Kind,
        timeout: Duration,
    ) -> Result<reply::Kind, CallError>;
    /// Opens a session (`ExecStream`, `Attach`): sends `request`, waits up to
    /// `timeout` for the answer and the descriptors that come with it, and returns the
    /// connection, which the session keeps (no read timeout on it any more).
    fn session(
        &self,
        socket: &Path,
        request: request::Kind,
        timeout: Duration,
    ) -> Result<Session, CallError>;
    /// Starts a supervisor with `args` from the executable `exe`; returns once it
    /// serves (or says why it cannot).
    fn spawn(&self, exe: &Path, args: &supervisor::Args) -> crate::error::Result<()>;
}

/// A pod's supervisor: its socket, over the backend's [`Link`].
#[derive(Clone)]
pub struct Client {
    link: Arc<dyn Link>,
    socket: PathBuf,
}

impl Client {
    /// The supervisor listening on `socket`, reached through `link`.
    pub fn new(link: Arc<dyn Link>, socket: PathBuf) -> Client {
        Client { link, socket }
    }

    /// Sends `request` and waits up to `timeout` for the answer.
    pub fn call(
        &self,
        request: request::Kind,
        timeout: Duration,
    ) -> Result<reply::Kind, CallError> {
        let _span = span(&request).entered();
        self.link.call(&self.socket, request, timeout)
    }

    /// Opens a session (see [`Link::session`]).
    pub fn session(&self, request: request::Kind, timeout: Duration) -> Result<Session, CallError> {
        let _span = span(&request).entered();
        self.link.session(&self.socket, request, timeout)
    }

    /// Pings: the supervisor's pid, PID-namespace holder and containers.
    pub fn ping(&self) -> Result<Pong, CallError> {
        match self.call(
            request::Kind::Ping(Default::default()),
            Duration::from_secs(5),
        )? {
            reply::Kind::Pong(p) => Ok(p),
            other => Err(unexpected(other)),
        }
    }
}

/// The span of one supervisor call, under the backend call that makes it.
fn span(request: &request::Kind) -> tracing::Span {
    use request::Kind;
    let verb = match request {
        Kind::Ping(_) => "Ping",
        Kind::Create(_) => "Create",
        Kind::Start(_) => "Start",
        Kind::State(_) => "State",
        Kind::Wait(_) => "Wait",
        Kind::Exec(_) => "Exec",
        Kind::Kill(_) => "Kill",
        Kind::Delete(_) => "Delete",
        Kind::ReopenLog(_) => "ReopenLog",
        Kind::Shutdown(_) => "Shutdown",
        Kind::ExecStream(_) => "ExecStream",
        Kind::Attach(_) => "Attach",
    };
    tracing::debug_span!(
        "supervisor",
        otel.name = %format_args!("supervisor {verb}"),
        otel.kind = "client",
        rpc.method = verb,
    )
}

/// The real [`Link`]: a unix socket per supervisor, and `<exe> shim` to start one.
pub struct Socket;

impl Link for Socket {
    fn call(
        &self,
        socket: &Path,
        request: request::Kind,
        timeout: Duration,
    ) -> Result<reply::Kind, CallError> {
        let mut conn = send(socket, request, timeout)?;
        let reply: Reply = wire::read_msg(&mut conn).map_err(read_error)?;
        reply_kind(reply)
    }

    fn session(
        &self,
        socket: &Path,
        request: request::Kind,
        timeout: Duration,
    ) -> Result<Session, CallError> {
        let mut conn = send(socket, request, timeout)?;
        let (reply, fds) = wire::read_msg_with_fds::<Reply>(&mut conn).map_err(read_error)?;
        let kind = reply_kind(reply)?;
        conn.set_read_timeout(None).map_err(CallError::Io)?;
        Ok((kind, fds, conn))
    }

    fn spawn(&self, exe: &Path, args: &supervisor::Args) -> crate::error::Result<()> {
        spawn(exe, args)
    }
}

/// Connects to `socket` and writes `request`; the answer is to be read within
/// `timeout`.
fn send(socket: &Path, request: request::Kind, timeout: Duration) -> Result<UnixStream, CallError> {
    let mut conn = match connect(socket) {
        Ok(c) => c,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(CallError::Gone)
        }
        Err(e) => return Err(CallError::Io(e)),
    };
    let timeout = timeout.max(Duration::from_millis(1));
    conn.set_read_timeout(Some(timeout))
        .map_err(CallError::Io)?;
    conn.set_write_timeout(Some(CALL_TIMEOUT))
        .map_err(CallError::Io)?;
    wire::write_msg(
        &mut conn,
        &Request {
            kind: Some(request),
        },
    )
    .map_err(|e| match e.kind() {
        // Accepted by a supervisor that was exiting.
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => CallError::Gone,
        _ => CallError::Io(e),
    })?;
    Ok(conn)
}

fn read_error(e: io::Error) -> CallError {
    match e.kind() {
        // The supervisor died (or shut down) while we waited.
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => CallError::Gone,
        _ => CallError::Io(e),
    }
}

/// A reply as a result: a refusal becomes an error.
pub fn reply_kind(reply: Reply) -> Result<reply::Kind, CallError> {
    match reply.kind {
        Some(reply::Kind::Error(e)) => Err(CallError::Refused(
            Code::try_from(e.code).unwrap_or(Code::Internal),
            e.message,
        )),
        Some(kind) => Ok(kind),
        None => Err(CallError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            "an empty reply",
        ))),
    }
}

/// Connects to the socket at `path` of any length: through `/proc/self/fd/<dir>/<name>`
/// with the socket's directory open, since a unix socket address holds only 107 bytes
/// and the agent, being multi-threaded, cannot `chdir` to shorten it.
fn connect(path: &Path) -> io::Result<UnixStream> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return UnixStream::connect(path);
    };
    let dir = std::fs::File::open(dir)?;
    let mut short = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    short.push(name);
    UnixStream::connect(short)
}

/// A reply of the wrong kind: a protocol mismatch.
pub fn unexpected(kind: reply::Kind) -> CallError {
    CallError::Io(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unexpected reply {kind:?}"),
    ))
}

/// Starts a supervisor with `args` by running `<exe> shim <args>`, which returns once
/// the supervisor serves (or says why it cannot).
fn spawn(exe: &Path, args: &supervisor::Args) -> crate::error::Result<()> {
    let out = Command::new(exe)
        .arg("shim")
        .args(args.to_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .current_dir("/")
        .output()
        .map_err(|e| Error::io(format!("running {} shim", exe.display()), e))?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::backend(
        "youki",
        format!(
            "starting the supervisor in {} ({}): {}",
            args.pod_dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    ))
}
