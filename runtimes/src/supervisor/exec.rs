//! Exec in the supervisor: a process started in a running container through
//! libcontainer's tenant builder. For ExecSync its output is collected and its deadline
//! enforced; an interactive exec's streams belong to the agent, and the supervisor
//! only reports its exit (or kills it when the client goes).

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use berth_proto::supervisor::{reply, ExecResult, Exit, Reply};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::io::{Drained, Pipe};
use crate::supervisor::wire::{self, MAX_EXEC_OUTPUT};

/// How long output may keep coming after the process exited: a background child that
/// inherited the pipes must not hold the answer back for ever.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// One running exec and the client waiting for it.
pub struct ExecJob {
    /// The exec'd process (our child, leader of its own process group).
    pub pid: Pid,
    client: UnixStream,
    deadline: Option<Instant>,
    /// Its stdout and stderr read ends; `None` once closed.
    pub pipes: [Option<Pipe>; 2],
    /// Collected output (kept when a pipe closes).
    output: [Vec<u8>; 2],
    status: Option<i32>,
    drained_by: Option<Instant>,
    timed_out: bool,
}

impl ExecJob {
    /// A job for `pid`, killed at `timeout` (none when zero).
    pub fn new(pid: Pid, client: UnixStream, timeout: Duration, pipes: [Pipe; 2]) -> ExecJob {
        let [out, err] = pipes;
        ExecJob {
            pid,
            client,
            deadline: (!timeout.is_zero()).then(|| Instant::now() + timeout),
            pipes: [Some(out), Some(err)],
            output: [Vec::new(), Vec::new()],
            status: None,
            drained_by: None,
            timed_out: false,
        }
    }

    /// Reads pipe `i` (0 stdout, 1 stderr) after poll said it is ready.
    pub fn read(&mut self, i: usize) {
        if let Some(pipe) = &mut self.pipes[i] {
            let state = pipe.drain(MAX_EXEC_OUTPUT);
            self.output[i].append(&mut pipe.pending);
            self.output[i].truncate(MAX_EXEC_OUTPUT);
            if state == Drained::Eof {
                self.pipes[i] = None;
            }
        }
    }

    /// The process was reaped with `code`.
    pub fn exited(&mut self, code: i32) {
        self.status = Some(code);
        self.drained_by = Some(Instant::now() + DRAIN_GRACE);
    }

    /// The next instant this job needs attention at, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.status {
            None if !self.timed_out => self.deadline,
            Some(_) => self.drained_by,
            None => None,
        }
    }

    /// Kills the process group when the deadline passed. Only the exec'd process and
    /// its children die: the container's init and other processes live on.
    pub fn enforce_deadline(&mut self, now: Instant) {
        if self.status.is_none() && !self.timed_out && self.deadline.is_some_and(|d| now >= d) {
            kill_group(self.pid);
            self.timed_out = true;
        }
    }

    /// True once the reply can go out: exited, and the output complete (or its grace
    /// period over).
    pub fn finished(&self, now: Instant) -> bool {
        self.status.is_some()
            && (self.pipes.iter().all(Option::is_none) || self.drained_by.is_some_and(|d| now >= d))
    }

    /// Sends the result to the waiting client.
    pub fn reply(mut self) {
        for i in 0..2 {
            self.read(i);
        }
        let [stdout, stderr] = self.output;
        let result = Reply {
            kind: Some(reply::Kind::Exec(ExecResult {
                exit_code: self.status.unwrap_or(-1),
                stdout,
                stderr,
                timed_out: self.timed_out,
            })),
        };
        // The client may have given up; nothing to do then.
        let _ = wire::write_msg(&mut self.client, &result);
    }
}

/// An interactive exec: its process and the client's connection.
pub struct ExecSession {
    /// The exec'd process (our child, the leader of a session of its own).
    pub pid: Pid,
    /// The client's end; it hangs up to end the session.
    pub conn: UnixStream,
}

impl ExecSession {
    /// The process ended with `code`: tells the client.
    pub fn exited(mut self, code: i32) {
        let exit = Reply {
            kind: Some(reply::Kind::Exit(Exit {
                exit_code: code,
                pid: self.pid.as_raw() as u32,
                ..Exit::default()
            })),
        };
        let _ = wire::write_msg(&mut self.conn, &exit);
    }

    /// The client went away: the process and what it started in its process group
    /// die (the reaper collects them as orphans).
    pub fn kill(self) {
        kill_group(self.pid);
    }
}

/// SIGKILLs the process `pid` and its process group (an exec'd process leads one).
pub fn kill_group(pid: Pid) {
    let _ = kill(Pid::from_raw(-pid.as_raw()), Signal::SIGKILL);
    let _ = kill(pid, Signal::SIGKILL);
}
