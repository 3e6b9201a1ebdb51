//! One container as its supervisor holds it: its init, its output (to the CRI log and
//! to attached clients), its stdin, and its exit once recorded.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use berth_proto::supervisor::{reply, ContainerState, Exit, Reply};
use nix::unistd::Pid;

use super::crilog::{CriLog, Stream};
use super::fanout::Attached;
use super::io::{Drained, Pipe};
use crate::supervisor::wire;
use crate::youki::clock::to_nanos;
use crate::youki::records::ExitRecord;

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

/// One container the supervisor holds.
pub struct Ctr {
    pub pid: Pid,
    /// A pidfd of the init, opened while it is our unreaped child: a signal through it
    /// can never reach a later holder of the pid number.
    pub pidfd: OwnedFd,
    pub log: CriLog,
    /// stdout and stderr read ends (with a terminal: its master, and no stderr);
    /// `None` once closed.
    pub pipes: [Option<Pipe>; 2],
    pub state_dir: PathBuf,
    pub cgroup: String,
    pub own_pid_namespace: bool,
    pub created_at: SystemTime,
    pub started_at: Option<SystemTime>,
    pub exit: Option<ExitRecord>,
    pub drained_by: Option<Instant>,
    /// Attached clients may write to its stdin (CRI `stdin`).
    pub stdin_open: bool,
    /// The write end of its stdin pipe (no terminal): kept to give attached clients,
    /// or handed to the first one asking with `stdin_once`.
    pub stdin: Option<OwnedFd>,
    pub stdin_once: bool,
    /// It runs on a terminal whose master is `pipes[0]`.
    pub tty: bool,
    pub attached: Vec<Attached>,
}

impl Ctr {
    /// Reads pipe `i`, hands the new bytes to the attached clients, and writes the
    /// complete lines to the log; at EOF the rest too.
    pub fn read(&mut self, i: usize) {
        let Some(pipe) = &mut self.pipes[i] else {
            return;
        };
        let before = pipe.pending.len();
        let eof = pipe.drain(usize::MAX) == Drained::Eof;
        for client in &mut self.attached {
            client.feed(i, &pipe.pending[before..]);
        }
        let stream = if i == 0 {
            Stream::Stdout
        } else {
            Stream::Stderr
        };
        if let Err(e) = self.log.feed(stream, &mut pipe.pending, eof) {
            eprintln!("writing the log of pid {}: {e}", self.pid);
            pipe.pending.clear();
        }
        if eof {
            self.pipes[i] = None;
        }
    }

    /// Flushes what is left and closes both pipes.
    pub fn close_pipes(&mut self) {
        for i in 0..2 {
            self.read(i);
            if let Some(pipe) = &mut self.pipes[i] {
                let stream = [Stream::Stdout, Stream::Stderr][i];
                let _ = self.log.feed(stream, &mut pipe.pending, true);
            }
            self.pipes[i] = None;
        }
    }

    /// True once the exit is recorded and the output is all in the log.
    pub fn done(&self) -> bool {
        self.exit.is_some() && self.pipes.iter().all(Option::is_none)
    }

    /// Started and not exited.
    pub fn running(&self) -> bool {
        self.started_at.is_some() && self.exit.is_none()
    }

    /// The container's state on the wire.
    pub fn state(&self) -> ContainerState {
        use berth_proto::supervisor::container_state::Status;
        let status = match (&self.exit, self.started_at) {
            (Some(_), _) => Status::Exited,
            (None, Some(_)) => Status::Running,
            (None, None) => Status::Created,
        };
        ContainerState {
            status: status as i32,
            pid: self.pid.as_raw() as u32,
            created_at: to_nanos(self.created_at),
            started_at: self.started_at.map(to_nanos).unwrap_or(0),
            exit: self.exit.as_ref().map(exit_message),
        }
    }

    /// Ends the sessions of the attached clients once the container is done: each gets
    /// its remaining output (for at most `grace`), then the exit, then its streams
    /// close. Clients that are cut off or gone are dropped.
    pub fn settle_attached(&mut self, now: Instant, grace: std::time::Duration) {
        let exit = self.exit.as_ref().filter(|_| self.done()).map(exit_message);
        if exit.is_some() {
            for client in &mut self.attached {
                client.ending.get_or_insert(now + grace);
            }
        }
        let mut k = 0;
        while k < self.attached.len() {
            let client = &self.attached[k];
            let finished = client
                .ending
                .is_some_and(|by| !client.behind() || now >= by);
            if client.broken {
                self.attached.swap_remove(k);
            } else if let (true, Some(exit)) = (finished, &exit) {
                let mut client = self.attached.swap_remove(k);
                let reply = Reply {
                    kind: Some(reply::Kind::Exit(*exit)),
                };
                // Gone already is fine: it detached.
                let _ = wire::write_msg(&mut client.conn, &reply);
            } else {
                k += 1;
            }
        }
    }

    /// The earliest moment an ending client must be let go, if any.
    pub fn attached_deadline(&self) -> Option<Instant> {
        self.attached.iter().filter_map(|c| c.ending).min()
    }
}
