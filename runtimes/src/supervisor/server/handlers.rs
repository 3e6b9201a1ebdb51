//! The supervisor's request handlers, one per request kind.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use std::os::fd::OwnedFd;

use berth_proto::supervisor::{reply, Create, Created, Done, Exec, Reply, Started};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::super::console::Console;
use super::super::containers::{self, ExecUser, Io, Stdio};
use super::super::crilog::CriLog;
use super::super::ctr::Ctr;
use super::super::error::{Error, Result};
use super::super::exec::ExecJob;
use super::super::io;
use super::Supervisor;
use crate::youki::clock::to_nanos;

/// How long Delete waits for a SIGKILLed init to be reaped.
const KILL_PATIENCE: Duration = Duration::from_secs(5);

/// The reply for a failure: its wire code, and its text with every source's.
pub fn error_reply(error: Error) -> Reply {
    Reply {
        kind: Some(error_kind(error)),
    }
}

fn error_kind(error: Error) -> reply::Kind {
    reply::Kind::Error(berth_proto::supervisor::Error {
        code: error.code() as i32,
        message: error.chain(),
    })
}

/// The reply for a container this supervisor does not hold.
pub(super) fn not_found(id: &str) -> reply::Kind {
    error_kind(missing(id))
}

pub(super) fn missing(id: &str) -> Error {
    Error::NotFound { id: id.to_string() }
}

/// libcontainer's texts for a process it will not execute (its executor's checks of
/// `args[0]`). They run in the container's init and reach us as text, across its fork.
const NOT_EXECUTABLE: [&str; 3] = [
    "not found in $PATH",
    "does not have correct permissions",
    "PATH environment variable is not set",
];

/// A failure to create a container or exec in one: [`Error::NotExecutable`] when the
/// command the request names cannot be executed in the container (the request's
/// fault, not the host's), else the failure as it is.
pub(super) fn launch_failure(e: Error) -> Error {
    let text = e.chain();
    if NOT_EXECUTABLE.iter().any(|t| text.contains(t)) {
        Error::NotExecutable {
            source: Box::new(e),
        }
    } else {
        e
    }
}

fn pipes() -> Result<([io::Pipe; 2], Stdio)> {
    let (out, out_w) = io::pipe().map_err(|e| Error::io("output pipe", e))?;
    let (err, err_w) = io::pipe().map_err(|e| Error::io("error pipe", e))?;
    let stdio = Stdio::null_in(out_w, err_w).map_err(|e| Error::io("opening /dev/null", e))?;
    Ok(([out, err], stdio))
}

/// Who an exec runs as, and where.
pub(super) fn exec_user(r: &Exec) -> ExecUser {
    ExecUser {
        uid: r.uid,
        gid: r.gid,
        additional_gids: r.additional_gids.clone(),
        cwd: r.cwd.clone(),
    }
}

/// A new container's output read ends (a terminal's master, or stdout and stderr
/// pipes), the write end of its stdin pipe, and its pid.
type Made = ([Option<io::Pipe>; 2], Option<OwnedFd>, Pid);

impl Supervisor {
    /// Creates the container with its stdio as `r` asks.
    fn make(&self, r: &Create) -> Result<Made> {
        let bundle = Path::new(&r.bundle);
        if r.tty {
            let console = Console::bind(&self.pod_dir)
                .map_err(|e| Error::io(format!("the console socket of {}", r.id), e))?;
            let io = Io::Terminal(console.path().to_path_buf());
            let pid = containers::create(&r.id, self.root(), bundle, io).map_err(launch_failure)?;
            return match console.receive() {
                Ok(master) => Ok(([Some(io::Pipe::new(master)), None], None, pid)),
                Err(e) => {
                    self.discard(&r.id, pid);
                    Err(Error::io(format!("the terminal of {}", r.id), e))
                }
            };
        }
        let ([out, err], mut stdio) = pipes()?;
        let mut stdin = None;
        if r.stdin {
            let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| Error::io("stdin pipe", e))?;
            stdio.stdin = read;
            stdin = Some(write);
        }
        let pid = containers::create(&r.id, self.root(), bundle, Io::Fds(stdio))
            .map_err(launch_failure)?;
        Ok(([Some(out), Some(err)], stdin, pid))
    }

    /// Undoes a create whose init is our unreaped child `pid`.
    fn discard(&self, id: &str, pid: Pid) {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, Some(WaitPidFlag::__WALL));
        let _ = containers::delete(id, self.root());
    }
}

impl Supervisor {
    pub(super) fn create(&mut self, r: Create) -> Result<reply::Kind> {
        if self.shutdown {
            return Err(Error::Precondition("the pod is shutting down".into()));
        }
        if self.containers.contains_key(&r.id) {
            return Err(Error::AlreadyExists { id: r.id });
        }
        let log_path = (!r.log_path.is_empty()).then(|| Path::new(&r.log_path));
        let log = CriLog::open(log_path).map_err(|source| Error::Log {
            path: r.log_path.clone(),
            source,
        })?;
        let (pipes, stdin, pid) = self.make(&r)?;
        let pidfd = match io::pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) => {
                self.discard(&r.id, pid);
                return Err(Error::io(format!("pidfd of {pid}"), e));
            }
        };
        self.containers.insert(
            r.id,
            Ctr {
                pid,
                pidfd,
                log,
                pipes,
                state_dir: r.state_dir.into(),
                cgroup: r.cgroup_path,
                own_pid_namespace: r.own_pid_namespace,
                created_at: SystemTime::now(),
                started_at: None,
                exit: None,
                drained_by: None,
                stdin_open: r.stdin,
                stdin,
                stdin_once: r.stdin_once,
                tty: r.tty,
                attached: Vec::new(),
            },
        );
        Ok(reply::Kind::Created(Created {
            pid: pid.as_raw() as u32,
        }))
    }

    pub(super) fn start(&mut self, id: &str) -> Result<reply::Kind> {
        let root = self.root().to_path_buf();
        let c = self.containers.get_mut(id).ok_or_else(|| missing(id))?;
        if c.exit.is_some() {
            return Err(Error::Precondition(format!("container {id} has exited")));
        }
        if c.started_at.is_some() {
            return Err(Error::Precondition(format!(
                "container {id} is started already"
            )));
        }
        containers::start(id, &root)?;
        let now = SystemTime::now();
        c.started_at = Some(now);
        Ok(reply::Kind::Started(Started {
            started_at: to_nanos(now),
        }))
    }

    pub(super) fn state(&self, id: &str) -> Result<reply::Kind> {
        let c = self.containers.get(id).ok_or_else(|| missing(id))?;
        Ok(reply::Kind::State(c.state()))
    }

    /// Fails unless the container `id` runs.
    pub(super) fn check_running(&self, id: &str) -> Result<&Ctr> {
        let c = self.containers.get(id).ok_or_else(|| missing(id))?;
        if !c.running() {
            return Err(Error::Precondition(format!(
                "container {id} is not running"
            )));
        }
        Ok(c)
    }

    /// Starts the exec; on failure gives the connection back with the reason.
    pub(super) fn exec(&mut self, r: Exec, conn: UnixStream) -> Result<(), (UnixStream, Error)> {
        if let Err(fail) = self.check_running(&r.id) {
            return Err((conn, fail));
        }
        let (pipes, stdio) = match pipes() {
            Ok(p) => p,
            Err(fail) => return Err((conn, fail)),
        };
        let user = exec_user(&r);
        match containers::exec(&r.id, self.root(), r.args, user, Io::Fds(stdio)) {
            Ok(pid) => {
                let timeout = Duration::from_millis(r.timeout_ms);
                self.execs.push(ExecJob::new(pid, conn, timeout, pipes));
                Ok(())
            }
            Err(e) => Err((conn, launch_failure(e))),
        }
    }

    pub(super) fn kill(&mut self, id: &str, signal: i32, all: bool) -> Result<reply::Kind> {
        let c = self.containers.get(id).ok_or_else(|| missing(id))?;
        if c.exit.is_some() {
            return Ok(reply::Kind::Done(Done {}));
        }
        let sig = Signal::try_from(signal)
            .map_err(|_| Error::Invalid(format!("{signal} is not a signal")))?;
        io::pidfd_signal(&c.pidfd, signal)
            .map_err(|e| Error::io(format!("signal {sig} to {id}"), e))?;
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
    pub(super) fn delete(&mut self, id: &str) -> Result<reply::Kind> {
        if !self.containers.contains_key(id) {
            containers::delete(id, self.root())?;
            return Ok(reply::Kind::Done(Done {}));
        }
        self.end(id)?;
        if let Some(c) = self.containers.get_mut(id) {
            c.close_pipes();
        }
        self.answer_waiters();
        containers::delete(id, self.root())?;
        self.containers.remove(id);
        Ok(reply::Kind::Done(Done {}))
    }

    /// SIGKILLs a container that has not exited and reaps its init.
    fn end(&mut self, id: &str) -> Result<()> {
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
                    return Err(Error::Broken(format!(
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
                Err(e) => return Err(Error::io(format!("waiting for {pid}"), e)),
            }
        }
    }

    pub(super) fn reopen_log(&mut self, id: &str) -> Result<reply::Kind> {
        let c = self.containers.get_mut(id).ok_or_else(|| missing(id))?;
        if c.exit.is_some() {
            return Err(Error::Precondition(format!(
                "container {id} is not running"
            )));
        }
        c.log
            .reopen()
            .map_err(|e| Error::io(format!("reopening the log of {id}"), e))?;
        Ok(reply::Kind::Done(Done {}))
    }

    /// Deletes every container, ends the PID namespace, and stops serving.
    pub(super) fn shut_down(&mut self) -> Result<reply::Kind> {
        let ids: Vec<String> = self.containers.keys().cloned().collect();
        let mut failures = Vec::new();
        for id in ids {
            if let Err(e) = self.delete(&id) {
                failures.push(e);
            }
        }
        if let Some(holder) = self.holder.take() {
            let _ = kill(holder, Signal::SIGKILL);
            let _ = waitpid(holder, Some(WaitPidFlag::__WALL));
        }
        if failures.len() == 1 {
            return Err(failures.remove(0));
        }
        if !failures.is_empty() {
            return Err(Error::Several { failures });
        }
        // Gone from now on: a client connecting after this reply finds no socket.
        let _ = std::fs::remove_file(self.pod_dir.join("shim.sock"));
        self.shutdown = true;
        Ok(reply::Kind::Done(Done {}))
    }
}

#[cfg(test)]
mod tests {
    use berth_proto::supervisor::error::Code;

    use super::*;

    /// A launch failure whose source says `text`, as libcontainer's do.
    fn failed_with(text: &str) -> Error {
        Error::io("exec in c1", std::io::Error::other(text.to_string()))
    }

    #[test]
    fn a_command_libcontainer_will_not_execute_is_the_requests_fault() {
        // libcontainer 0.7's texts, as they reach the supervisor.
        for text in [
            "failed to create container: exec process failed with error error in executing \
             process : executable 'nope' not found in $PATH",
            "executable '' at path '\"/bin/\"' does not have correct permissions",
        ] {
            let err = launch_failure(failed_with(text));
            assert_eq!(err.code(), Code::Invalid, "{text}");
            let message = err.chain();
            assert!(message.contains(text), "{message}");
            assert!(message.starts_with("the command cannot be executed: exec in c1: "));
        }
        let err = launch_failure(failed_with("failed to prepare rootfs"));
        assert_eq!(err.code(), Code::Internal);
    }

    #[test]
    fn several_failures_keep_a_shared_code_and_every_cause() {
        let gone = Error::Several {
            failures: vec![missing("a"), missing("b")],
        };
        assert_eq!(gone.code(), Code::NotFound);
        let mixed = Error::Several {
            failures: vec![missing("a"), failed_with("EBUSY")],
        };
        assert_eq!(mixed.code(), Code::Internal);
        let text = mixed.chain();
        assert!(
            text.contains("container a") && text.contains("EBUSY"),
            "{text}"
        );
    }
}
