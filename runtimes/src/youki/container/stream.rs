//! Interactive exec and attach. The pod's supervisor starts the process (or attaches
//! to the container's stdio) and passes the descriptors of its streams over its
//! socket; the agent reads and writes them itself, so no byte of a session goes
//! through the supervisor's loop except an attached container's output (which it reads
//! for the log anyway). The connection stays open for the session: the supervisor
//! reports the exit on it, and closing it (dropping the session, or the agent dying)
//! kills an exec'd process or detaches.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use berth_proto::supervisor::streams::Fd;
use berth_proto::supervisor::{reply, request, Attach, Exec, ExecStream, Reply, Stdio, Streams};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::types::{
    AttachRequest, ExecStreamRequest, StdioRequest, StreamReader, StreamSession, StreamWriter,
};

use super::super::backend::{blocking, Backend};
use super::super::client::{unexpected, CALL_TIMEOUT};
use super::super::fdio::{resizer, FdReader, FdWriter};
use super::super::layout::key;
use super::super::NAME;
use crate::supervisor::wire;

fn wire_stdio(s: &StdioRequest) -> Stdio {
    Stdio {
        tty: s.tty,
        stdin: s.stdin,
        stdout: s.stdout,
        stderr: s.stderr,
    }
}

impl Backend {
    /// Starts `request.cmd` in the running container `id` with the streams asked for,
    /// as its user, in its working directory, with its environment, capabilities and
    /// seccomp filter (see the supervisor's `containers::exec`).
    pub async fn exec_stream(
        self: &Arc<Self>,
        id: &ContainerId,
        request: &ExecStreamRequest,
    ) -> Result<StreamSession> {
        if request.cmd.is_empty() {
            return Err(Error::InvalidSpec(format!(
                "Exec in {id}: the command is empty"
            )));
        }
        let record = self.container(id)?;
        let user = record.user.clone().unwrap_or_default();
        let exec = Exec {
            id: key(id),
            args: request.cmd.clone(),
            timeout_ms: 0,
            uid: user.uid,
            gid: user.gid,
            additional_gids: user.supplemental_groups,
            cwd: record.cwd.clone(),
        };
        let kind = request::Kind::ExecStream(ExecStream {
            exec: Some(exec),
            stdio: Some(wire_stdio(&request.stdio)),
        });
        self.open_session(&record.pod, id, kind, request.stdio)
            .await
    }

    /// Attaches to the running container `id`'s stdio.
    pub async fn attach(
        self: &Arc<Self>,
        id: &ContainerId,
        request: &AttachRequest,
    ) -> Result<StreamSession> {
        let record = self.container(id)?;
        let kind = request::Kind::Attach(Attach {
            id: key(id),
            stdio: Some(wire_stdio(&request.stdio)),
        });
        self.open_session(&record.pod, id, kind, request.stdio)
            .await
    }

    async fn open_session(
        self: &Arc<Self>,
        pod: &ContainerId,
        id: &ContainerId,
        kind: request::Kind,
        wanted: StdioRequest,
    ) -> Result<StreamSession> {
        let client = self.supervisor(pod);
        let name = id.to_string();
        let (streams, fds, conn) = blocking(move || match client.session(kind, CALL_TIMEOUT) {
            Ok((reply::Kind::Streams(s), fds, conn)) => Ok((s, fds, conn)),
            Ok((other, ..)) => Err(unexpected(other).into_error("container", &name)),
            Err(e) => Err(e.into_error("container", &name)),
        })
        .await?;
        session(id, streams, fds, conn, wanted)
    }
}

/// The session over the descriptors the supervisor passed. A stream asked for that
/// the container cannot give (stdin of a container created without it, a terminal it
/// does not have) is still there: input is dropped, sizes are ignored.
fn session(
    id: &ContainerId,
    streams: Streams,
    fds: Vec<OwnedFd>,
    conn: UnixStream,
    wanted: StdioRequest,
) -> Result<StreamSession> {
    if streams.fds.len() != fds.len() {
        return Err(Error::backend(
            NAME,
            format!(
                "session in {id}: {} descriptors announced, {} received",
                streams.fds.len(),
                fds.len()
            ),
        ));
    }
    let io = |e: std::io::Error| Error::io(format!("session in {id}"), e);
    let mut session = StreamSession {
        stdin: None,
        stdout: None,
        stderr: None,
        resize: None,
        done: Box::pin(async { Ok(0) }),
    };
    for (role, fd) in streams.fds.into_iter().zip(fds) {
        match Fd::try_from(role) {
            Ok(Fd::Stdin) => session.stdin = Some(Box::new(FdWriter::new(fd).map_err(io)?)),
            Ok(Fd::Stdout) => session.stdout = Some(Box::new(FdReader::new(fd).map_err(io)?)),
            Ok(Fd::Stderr) => session.stderr = Some(Box::new(FdReader::new(fd).map_err(io)?)),
            Ok(Fd::Terminal) => session.resize = Some(resizer(fd)),
            // From a newer supervisor: not ours to use.
            Err(_) => {}
        }
    }
    if wanted.stdin && session.stdin.is_none() {
        session.stdin = Some(Box::new(tokio::io::sink()) as StreamWriter);
    }
    for (asked, stream) in [
        (wanted.stdout, &mut session.stdout),
        (wanted.stderr, &mut session.stderr),
    ] {
        if asked && stream.is_none() {
            *stream = Some(Box::new(tokio::io::empty()) as StreamReader);
        }
    }
    if wanted.tty && session.resize.is_none() {
        session.resize = Some(mpsc::channel(1).0);
    }
    conn.set_nonblocking(true).map_err(io)?;
    let mut conn = tokio::net::UnixStream::from_std(conn).map_err(io)?;
    let id = id.clone();
    session.done = Box::pin(async move {
        match wire::read_msg_async::<Reply>(&mut conn).await {
            Ok(Reply {
                kind: Some(reply::Kind::Exit(exit)),
            }) => Ok(exit.exit_code),
            Ok(other) => Err(Error::backend(
                NAME,
                format!("session in {id}: unexpected {other:?}"),
            )),
            Err(e) => Err(Error::internal(
                NAME,
                format!("session in {id}: the pod's supervisor ended it without an exit"),
                e,
            )),
        }
    });
    Ok(session)
}
