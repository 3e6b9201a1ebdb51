//! The session requests: an interactive exec and an attach. Both answer `Streams`
//! with the descriptors the agent reads and writes itself, then keep the connection
//! (see `proto/supervisor.proto`).

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use berth_proto::supervisor::streams::Fd;
use berth_proto::supervisor::{reply, Attach, ExecStream, Reply, Stdio as Wanted, Streams};
use nix::fcntl::OFlag;
use nix::unistd::{pipe2, Pid};

use super::super::console::Console;
use super::super::containers::{self, Io, Stdio};
use super::super::error::{Error, Result};
use super::super::exec::{kill_group, ExecSession};
use super::super::fanout::{Attached, Sink};
use super::handlers::{exec_user, launch_failure};
use super::Supervisor;
use crate::supervisor::wire;

/// The descriptors of a session, each with its role.
type Passed = Vec<(Fd, OwnedFd)>;

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::io("pipe", e))
}

fn copy(fd: &OwnedFd) -> Result<OwnedFd> {
    fd.try_clone()
        .map_err(|e| Error::io(format!("dup of {}", fd.as_raw_fd()), e))
}

fn null(write: bool) -> Result<OwnedFd> {
    std::fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|e| Error::io("opening /dev/null", e))
}

/// Sends `Streams` with the descriptors; they are closed here afterwards (the agent
/// holds its copies).
fn send(conn: &mut UnixStream, pid: Pid, passed: Passed) -> std::io::Result<()> {
    let streams = Streams {
        fds: passed.iter().map(|(role, _)| *role as i32).collect(),
        pid: pid.as_raw() as u32,
    };
    let raw: Vec<_> = passed.iter().map(|(_, fd)| fd.as_raw_fd()).collect();
    let reply = Reply {
        kind: Some(reply::Kind::Streams(streams)),
    };
    wire::write_msg_with_fds(conn, &reply, &raw)
}

impl Supervisor {
    /// Starts an interactive exec and hands its streams over; on failure gives the
    /// connection back with the reason.
    pub(in super::super) fn exec_stream(
        &mut self,
        r: ExecStream,
        conn: UnixStream,
    ) -> Result<(), (UnixStream, Error)> {
        let (exec, wanted) = (r.exec.unwrap_or_default(), r.stdio.unwrap_or_default());
        let started = self
            .check_running(&exec.id)
            .map(drop)
            .and_then(|()| self.spawn_exec(exec, wanted));
        let (pid, passed) = match started {
            Ok(s) => s,
            Err(fail) => return Err((conn, fail)),
        };
        let mut session = ExecSession { pid, conn };
        match send(&mut session.conn, pid, passed) {
            Ok(()) => self.sessions.push(session),
            // The client is gone already; so is the command.
            Err(_) => session.kill(),
        }
        Ok(())
    }

    /// Runs the exec with a terminal or with pipes for the streams asked for (the
    /// others are `/dev/null`).
    fn spawn_exec(
        &self,
        exec: berth_proto::supervisor::Exec,
        wanted: Wanted,
    ) -> Result<(Pid, Passed)> {
        let user = exec_user(&exec);
        let what = format!("exec in {}", exec.id);
        if wanted.tty {
            let console = Console::bind(&self.pod_dir)
                .map_err(|e| Error::io(format!("{what}: the console socket"), e))?;
            let io = Io::Terminal(console.path().to_path_buf());
            let pid = containers::exec(&exec.id, self.root(), exec.args, user, io)
                .map_err(launch_failure)?;
            let master = console.receive().map_err(|e| {
                kill_group(pid);
                Error::io(format!("{what}: the terminal"), e)
            })?;
            let mut passed = Vec::new();
            if wanted.stdin {
                passed.push((Fd::Stdin, copy(&master)?));
            }
            if wanted.stdout {
                passed.push((Fd::Stdout, copy(&master)?));
            }
            passed.push((Fd::Terminal, master));
            return Ok((pid, passed));
        }
        let mut passed = Vec::new();
        let stdin = if wanted.stdin {
            let (read, write) = pipe()?;
            passed.push((Fd::Stdin, write));
            read
        } else {
            null(false)?
        };
        let mut output = |want: bool, role: Fd| -> Result<OwnedFd> {
            if !want {
                return null(true);
            }
            let (read, write) = pipe()?;
            passed.push((role, read));
            Ok(write)
        };
        let stdout = output(wanted.stdout, Fd::Stdout)?;
        let stderr = output(wanted.stderr, Fd::Stderr)?;
        let io = Io::Fds(Stdio {
            stdin,
            stdout,
            stderr,
        });
        let pid =
            containers::exec(&exec.id, self.root(), exec.args, user, io).map_err(launch_failure)?;
        Ok((pid, passed))
    }

    /// Attaches a client to the container's stdio; on failure gives the connection
    /// back with the reason.
    pub(in super::super) fn attach(
        &mut self,
        r: Attach,
        conn: UnixStream,
    ) -> Result<(), (UnixStream, Error)> {
        let wanted = r.stdio.unwrap_or_default();
        let prepared = self
            .check_running(&r.id)
            .map(drop)
            .and_then(|()| self.attach_streams(&r.id, wanted));
        let (pid, passed, out) = match prepared {
            Ok(p) => p,
            Err(fail) => return Err((conn, fail)),
        };
        let mut client = Attached::new(conn, out);
        if send(&mut client.conn, pid, passed).is_ok() {
            if let Some(c) = self.containers.get_mut(&r.id) {
                c.attached.push(client);
            }
        }
        Ok(())
    }

    /// The descriptors for a new attached client and the supervisor's ends of its
    /// output pipes. Stdin is the container's own pipe (shared), or with `stdin_once`
    /// handed to this client alone: it closes when the client closes it.
    fn attach_streams(
        &mut self,
        id: &str,
        wanted: Wanted,
    ) -> Result<(Pid, Passed, [Option<Sink>; 2])> {
        let Some(c) = self.containers.get_mut(id) else {
            return Err(super::handlers::missing(id));
        };
        let mut passed = Vec::new();
        let terminal = c.pipes[0].as_ref().filter(|_| c.tty).map(|p| &p.fd);
        if wanted.stdin && c.stdin_open {
            match terminal {
                Some(master) => passed.push((Fd::Stdin, copy(master)?)),
                None if c.stdin_once => {
                    if let Some(write) = c.stdin.take() {
                        passed.push((Fd::Stdin, write));
                    }
                }
                None => {
                    if let Some(write) = &c.stdin {
                        passed.push((Fd::Stdin, copy(write)?));
                    }
                }
            }
        }
        if let (true, Some(master)) = (wanted.tty, terminal) {
            passed.push((Fd::Terminal, copy(master)?));
        }
        let mut out = [None, None];
        for (i, (want, role)) in [(wanted.stdout, Fd::Stdout), (wanted.stderr, Fd::Stderr)]
            .into_iter()
            .enumerate()
        {
            if want {
                let (read, write) = pipe()?;
                passed.push((role, read));
                out[i] = Some(Sink::new(write).map_err(|e| Error::io("an attach's output", e))?);
            }
        }
        Ok((c.pid, passed, out))
    }
}
