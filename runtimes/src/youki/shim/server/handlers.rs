//! The supervisor's request handlers, one per request kind.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use berth_proto::supervisor::error::Code;
use berth_proto::supervisor::{reply, Create, Created, Done, Exec, Exit, Reply, Started};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use super::super::containers::{self, ExecUser, Stdio};
use super::super::crilog::CriLog;
use super::super::exec::ExecJob;
use super::super::io;
use super::{Ctr, Fail, Supervisor};
use crate::youki::clock::to_nanos;
use crate::youki::records::ExitRecord;

/// How long Delete waits for a SIGKILLed init to be reaped.
const KILL_PATIENCE: Duration = Duration::from_secs(5);

/// The wire form of an exit record.
pub fn exit_message(e: &ExitRecord) -> Exit {
    Exit {
        exit_code: e.exit_code,
        started_at: e.started_at.map(to_nanos).unwrap_or(0),
        finished_at: to_nanos(e.finished_at),
        oom_killed: e.oom_killed,
        pid: e.pid,
    }
}

/// The reply for a failure.
pub fn error_reply((code, message): Fail) -> Reply {
    Reply {
        kind: Some(reply::Kind::Error(berth_proto::supervisor::Error {
            code: code as i32,
            message,
        })),
    }
}

/// The reply for a container this supervisor does not hold.
pub fn not_found(id: &str) -> reply::Kind {
    reply::Kind::Error(berth_proto::supervisor::Error {
        code: Code::NotFound as i32,
        message: format!("container {id} not found in its pod's supervisor"),
    })
}

fn missing(id: &str) -> Fail {
    (
        Code::NotFound,
        format!("container {id} not found in its pod's supervisor"),
    )
}

fn internal(e: impl std::fmt::Display) -> Fail {
    (Code::Internal, e.to_string())
}

fn pipes() -> Result<([io::Pipe; 2], Stdio), Fail> {
    let (out, out_w) = io::pipe().map_err(internal)?;
    let (err, err_w) = io::pipe().map_err(internal)?;
    let stdio = Stdio::null_in(out_w, err_w).map_err(internal)?;
    Ok(([out, err], stdio))
}

impl Supervisor {
    pub(super) fn create(&mut self, r: Create) -> Result<reply::Kind, Fail> {
        if self.shutdown {
            return Err((Code::FailedPrecondition, "the pod is shutting down".into()));
        }
        if self.containers.contains_key(&r.id) {
            return Err((Code::AlreadyExists, format!("container {} exists", r.id)));
        }
        let log_path = (!r.log_path.is_empty()).then(|| Path::new(&r.log_path));
        let log = CriLog::open(log_path).map_err(|e| {
            (
                Code::Invalid,
                format!("opening the log {}: {e}", r.log_path),
            )
        })?;
        let ([out, err], stdio) = pipes()?;
        let pid = containers::create(&r.id, self.root(), Path::new(&r.bundle), stdio)
            .map_err(internal)?;
        let pidfd = match io::pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = kill(pid, Signal::SIGKILL);
                let _ = waitpid(pid, Some(WaitPidFlag::__WALL));
                let _ = containers::delete(&r.id, self.root());
                return Err(internal(format!("pidfd of {pid}: {e}")));
            }
        };
        self.containers.insert(
            r.id,
            Ctr {
                pid,
                pidfd,
                log,
                pipes: [Some(out), Some(err)],
                state_dir: r.state_dir.into(),
                cgroup: r.cgroup_path,
                own_pid_namespace: r.own_pid_namespace,
                created_at: SystemTime::now(),
                started_at: None,
                exit: None,
                drained_by: None,
            },
        );
        Ok(reply::Kind::Created(Created {
            pid: pid.as_raw() as u32,
        }))
    }

    pub(super) fn start(&mut self, id: &str) -> Result<reply::Kind, Fail> {
        let root = self.root().to_path_buf();
        let c = self.containers.get_mut(id).ok_or_else(|| missing(id))?;
        if c.exit.is_some() {
            return Err((
                Code::FailedPrecondition,
                format!("container {id} has exited"),
            ));
        }
        if c.started_at.is_some() {
            return Err((
                Code::FailedPrecondition,
                format!("container {id} is started already"),
            ));
        }
        containers::start(id, &root).map_err(internal)?;
        let now = SystemTime::now();
        c.started_at = Some(now);
        Ok(reply::Kind::Started(Started {
            started_at: to_nanos(now),
        }))
    }

    pub(super) fn state(&self, id: &str) -> Result<reply::Kind, Fail> {
        let c = self.containers.get(id).ok_or_else(|| missing(id))?;
        Ok(reply::Kind::State(c.state()))
    }

    /// Starts the exec; on failure gives the connection back with the reason.
    pub(super) fn exec(&mut self, r: Exec, conn: UnixStream) -> Result<(), (UnixStream, Fail)> {
        let running = self
            .containers
            .get(&r.id)
            .map(|c| c.started_at.is_some() && c.exit.is_none());
        match running {
            None => return Err((conn, missing(&r.id))),
            Some(false) => {
                let why = format!("container {} is not running", r.id);
                return Err((conn, (Code::FailedPrecondition, why)));
            }
            Some(true) => {}
        }
        let (pipes, stdio) = match pipes() {
            Ok(p) => p,
            Err(fail) => return Err((conn, fail)),
        };
        let user = ExecUser {
            uid: r.uid,
            gid: r.gid,
            additional_gids: r.additional_gids,
            cwd: r.cwd,
        };
        match containers::exec(&r.id, self.root(), r.args, user, stdio) {
            Ok(pid) => {
                let timeout = Duration::from_millis(r.timeout_ms);
                self.execs.push(ExecJob::new(pid, conn, timeout, pipes));
                Ok(())
            }
            Err(e) => Err((conn, internal(format!("exec in {}: {e}", r.id)))),
        }
    }

    pub(super) fn kill(&mut self, id: &str, signal: i32, all: bool) -> Result<reply::Kind, Fail> {
        let c = self.containers.get(id).ok_or_else(|| missing(id))?;
        if c.exit.is_some() {
            return Ok(reply::Kind::Done(Done {}));
        }
        let sig = Signal::try_from(signal)
            .map_err(|_| (Code::Invalid, format!("{signal} is not a signal")))?;
        io::pidfd_signal(&c.pidfd, signal)
            .map_err(|e| internal(format!("signal {sig} to {id}: {e}")))?;
        if all {
            for pid in self
                .hierarchy
                .as_ref()
                .map(|h| h.procs(&c.cgroup))
                .unwrap_or_default()
            {
                let _ = kill(pid, sig);
            }
        }
        Ok(reply::Kind::Done(Done {}))
    }

    /// Kills the container (if it still runs), waits for its exit to be recorded,
    /// answers its waiters, and removes libcontainer's state and its cgroup.
    pub(super) fn delete(&mut self, id: &str) -> Result<reply::Kind, Fail> {
        if !self.containers.contains_key(id) {
            containers::delete(id, self.root()).map_err(internal)?;
            return Ok(reply::Kind::Done(Done {}));
        }
        self.end(id)?;
        if let Some(c) = self.containers.get_mut(id) {
            c.close_pipes();
        }
        self.answer_waiters();
        containers::delete(id, self.root()).map_err(internal)?;
        self.containers.remove(id);
        Ok(reply::Kind::Done(Done {}))
    }

    /// SIGKILLs a container that has not exited and reaps its init.
    fn end(&mut self, id: &str) -> Result<(), Fail> {
        let Some(c) = self.containers.get(id) else {
            return Ok(());
        };
        if c.exit.is_some() {
            return Ok(());
        }
        let pid = c.pid;
        let _ = io::pidfd_signal(&c.pidfd, libc::SIGKILL);
        if let Some(h) = &self.hierarchy {
            h.kill_all(&c.cgroup, Duration::from_millis(500));
        }
        let deadline = Instant::now() + KILL_PATIENCE;
        loop {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
                Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(WaitStatus::StillAlive) => {
                    return Err(internal(format!(
                        "container {id} (pid {pid}) did not die within {KILL_PATIENCE:?} of SIGKILL"
                    )))
                }
                Ok(status) => {
                    if let Some(code) = io::exit_code(status) {
                        self.child_exited(pid, code);
                        return Ok(());
                    }
                }
                // Reaped elsewhere already (cannot happen: we are its only reaper).
                Err(e) => return Err(internal(format!("waiting for {pid}: {e}"))),
            }
        }
    }

    pub(super) fn reopen_log(&mut self, id: &str) -> Result<reply::Kind, Fail> {
        let c = self.containers.get_mut(id).ok_or_else(|| missing(id))?;
        if c.exit.is_some() {
            return Err((
                Code::FailedPrecondition,
                format!("container {id} is not running"),
            ));
        }
        c.log
            .reopen()
            .map_err(|e| internal(format!("reopening the log of {id}: {e}")))?;
        Ok(reply::Kind::Done(Done {}))
    }

    /// Deletes every container, ends the PID namespace, and stops serving.
    pub(super) fn shut_down(&mut self) -> Result<reply::Kind, Fail> {
        let ids: Vec<String> = self.containers.keys().cloned().collect();
        let mut failures = Vec::new();
        for id in ids {
            if let Err((_, e)) = self.delete(&id) {
                failures.push(e);
            }
        }
        if let Some(holder) = self.holder.take() {
            let _ = kill(holder, Signal::SIGKILL);
            let _ = waitpid(holder, Some(WaitPidFlag::__WALL));
        }
        if !failures.is_empty() {
            return Err(internal(failures.join("; ")));
        }
        // Gone from now on: a client connecting after this reply finds no socket.
        let _ = std::fs::remove_file(self.pod_dir.join("shim.sock"));
        self.shutdown = true;
        Ok(reply::Kind::Done(Done {}))
    }
}
