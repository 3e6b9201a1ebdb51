//! The supervisor's event loop: one thread, `poll(2)` over the listening socket, the
//! SIGCHLD self-pipe, the containers' and execs' output pipes and the connections of
//! clients waiting for an exit. Requests are handled one at a time, in arrival order.

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use berth_proto::supervisor::{reply, request, Pong, Reply, Request};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::ctr::{exit_message, Ctr};
use super::error::{Error, Result};
use super::exec::{ExecJob, ExecSession};
use super::io;
use super::{holder, Args};
use crate::supervisor::wire;
use crate::youki::cgroups::Hierarchy;
use crate::youki::records::ExitRecord;

mod handlers;
mod streams;

/// How long a container's output may keep coming after its init exited (a process
/// that escaped the kill still holding the pipe must not hold `Wait` back for ever).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Which source a polled descriptor belongs to.
enum Slot {
    Listener,
    Sigchld,
    Ctr(String, usize),
    Exec(usize, usize),
    Waiter(usize),
    /// The connection of an interactive exec (readable: its client hung up).
    Session(usize),
    /// The connection of an attached client (readable: it detached).
    Attached(String, usize),
    /// An attached client's pipe that takes more output.
    Behind(String, usize),
}

/// The supervisor's state.
pub struct Supervisor {
    pub(super) pod_dir: PathBuf,
    pub(super) root: PathBuf,
    pub(super) hierarchy: Option<Hierarchy>,
    listener: UnixListener,
    sigchld: OwnedFd,
    pub(super) holder: Option<Pid>,
    pub(super) containers: BTreeMap<String, Ctr>,
    pub(super) execs: Vec<ExecJob>,
    pub(super) sessions: Vec<ExecSession>,
    pub(super) waiters: Vec<(String, UnixStream)>,
    pub(super) shutdown: bool,
}

impl Supervisor {
    /// Binds `<pod_dir>/shim.sock`, installs the SIGCHLD handler and forks the PID
    /// namespace holder when asked.
    pub fn bind(args: &Args) -> Result<Supervisor> {
        let socket = args.pod_dir.join("shim.sock");
        match fs::remove_file(&socket) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(Error::io(format!("removing {}", socket.display()), e))
            }
            _ => {}
        }
        // Bound by its short relative name from inside the directory: a unix socket
        // address holds only 107 bytes, and the pod directory may be longer.
        let bound =
            std::env::set_current_dir(&args.pod_dir).and_then(|()| UnixListener::bind("shim.sock"));
        let _ = std::env::set_current_dir("/");
        let listener = bound.map_err(|e| Error::io(format!("binding {}", socket.display()), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("socket", e))?;
        let sigchld = io::sigchld_pipe().map_err(|e| Error::io("SIGCHLD handler", e))?;
        let holder = if args.pid_namespace {
            Some(
                holder::spawn(args.userns.as_deref())
                    .map_err(|e| Error::io("PID namespace holder", e))?,
            )
        } else {
            None
        };
        let hierarchy = Hierarchy::detect()
            .map_err(|e| eprintln!("{e}; OOM kills will not be reported"))
            .ok();
        Ok(Supervisor {
            pod_dir: args.pod_dir.clone(),
            root: args.libcontainer_root.clone(),
            hierarchy,
            listener,
            sigchld,
            holder,
            containers: BTreeMap::new(),
            execs: Vec::new(),
            sessions: Vec::new(),
            waiters: Vec::new(),
            shutdown: false,
        })
    }

    /// Serves until `Shutdown`.
    pub fn run(mut self) -> Result<()> {
        while !self.shutdown {
            let (slots, ready) = self.wait_for_events()?;
            if ready
                .iter()
                .zip(&slots)
                .any(|(r, s)| *r && matches!(s, Slot::Sigchld))
            {
                io::drain_wakeups(&self.sigchld);
            }
            // Reap before reading output, so an exit is recorded before its last lines.
            self.reap();
            let (mut hung_up, mut left) = (Vec::new(), Vec::new());
            let mut accept = false;
            for (slot, ready) in slots.into_iter().zip(ready) {
                if !ready {
                    continue;
                }
                match slot {
                    Slot::Listener => accept = true,
                    Slot::Sigchld => {}
                    Slot::Ctr(id, i) => {
                        if let Some(c) = self.containers.get_mut(&id) {
                            c.read(i);
                        }
                    }
                    Slot::Exec(j, i) => self.execs[j].read(i),
                    // A waiting client never writes again: readable means it hung up.
                    Slot::Waiter(w) => hung_up.push(w),
                    Slot::Session(s) => left.push(s),
                    // Likewise an attached one: it detached (the round drops it).
                    Slot::Attached(id, k) => {
                        if let Some(client) = self.client(&id, k) {
                            client.broken = true;
                        }
                    }
                    Slot::Behind(id, k) => {
                        if let Some(client) = self.client(&id, k) {
                            client.flush();
                        }
                    }
                }
            }
            for w in hung_up.into_iter().rev() {
                self.waiters.swap_remove(w);
            }
            // The client of an interactive exec went away: the command goes too.
            for s in left.into_iter().rev() {
                self.sessions.swap_remove(s).kill();
            }
            self.expire();
            self.answer_waiters();
            if accept {
                self.accept();
                // A Wait for a container that has exited already is answered now.
                self.answer_waiters();
            }
        }
        let _ = fs::remove_file(self.pod_dir.join("shim.sock"));
        let _ = fs::remove_file(self.pod_dir.join("shim.pid"));
        Ok(())
    }

    /// Polls every source until one is ready or the nearest deadline passes.
    fn wait_for_events(&self) -> Result<(Vec<Slot>, Vec<bool>)> {
        let mut slots = vec![Slot::Listener, Slot::Sigchld];
        let mut fds = vec![
            PollFd::new(self.listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.sigchld.as_fd(), PollFlags::POLLIN),
        ];
        for (id, c) in &self.containers {
            for (i, pipe) in c.pipes.iter().enumerate() {
                if let Some(pipe) = pipe {
                    fds.push(PollFd::new(pipe.fd.as_fd(), PollFlags::POLLIN));
                    slots.push(Slot::Ctr(id.clone(), i));
                }
            }
        }
        for (j, job) in self.execs.iter().enumerate() {
            for (i, pipe) in job.pipes.iter().enumerate() {
                if let Some(pipe) = pipe {
                    fds.push(PollFd::new(pipe.fd.as_fd(), PollFlags::POLLIN));
                    slots.push(Slot::Exec(j, i));
                }
            }
        }
        for (w, (_, conn)) in self.waiters.iter().enumerate() {
            fds.push(PollFd::new(conn.as_fd(), PollFlags::POLLIN));
            slots.push(Slot::Waiter(w));
        }
        for (s, session) in self.sessions.iter().enumerate() {
            fds.push(PollFd::new(session.conn.as_fd(), PollFlags::POLLIN));
            slots.push(Slot::Session(s));
        }
        for (id, c) in &self.containers {
            for (k, client) in c.attached.iter().enumerate() {
                fds.push(PollFd::new(client.conn.as_fd(), PollFlags::POLLIN));
                slots.push(Slot::Attached(id.clone(), k));
                for sink in client.out.iter().flatten().filter(|s| s.behind()) {
                    fds.push(PollFd::new(sink.fd().as_fd(), PollFlags::POLLOUT));
                    slots.push(Slot::Behind(id.clone(), k));
                }
            }
        }
        let next = self
            .execs
            .iter()
            .filter_map(ExecJob::next_deadline)
            .chain(
                self.containers
                    .values()
                    .filter_map(|c| c.drained_by.filter(|_| c.pipes.iter().any(Option::is_some))),
            )
            .chain(self.containers.values().filter_map(Ctr::attached_deadline))
            .min();
        let timeout = match next {
            None => PollTimeout::NONE,
            Some(at) => {
                let ms = at.saturating_duration_since(Instant::now()).as_millis() + 1;
                PollTimeout::try_from(ms.min(60_000) as i32).unwrap_or(PollTimeout::MAX)
            }
        };
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::io("poll", e)),
        }
        let ready = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        Ok((slots, ready))
    }

    /// Collects every child that ended: container inits (exit recorded), exec'd
    /// processes, the PID-namespace holder, and orphans of the pod (just reaped).
    fn reap(&mut self) {
        loop {
            let status = match waitpid(
                Pid::from_raw(-1),
                Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL),
            ) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => status,
            };
            let (Some(pid), Some(code)) = (status.pid(), io::exit_code(status)) else {
                continue;
            };
            self.child_exited(pid, code);
        }
    }

    /// Books the end of `pid` with exit `code`.
    pub(super) fn child_exited(&mut self, pid: Pid, code: i32) {
        if self.holder == Some(pid) {
            eprintln!("the pod's PID namespace holder {pid} exited ({code})");
            self.holder = None;
        } else if let Some(job) = self.execs.iter_mut().find(|j| j.pid == pid) {
            job.exited(code);
        } else if let Some(s) = self.sessions.iter().position(|s| s.pid == pid) {
            self.sessions.swap_remove(s).exited(code);
        } else if let Some(id) = self
            .containers
            .iter()
            .find(|(_, c)| c.pid == pid && c.exit.is_none())
            .map(|(id, _)| id.clone())
        {
            self.record_exit(&id, code);
        }
    }

    /// Writes the exit record of `id` (before anyone can hear of the exit) and ends
    /// what the init left behind in a PID namespace it did not own.
    fn record_exit(&mut self, id: &str, code: i32) {
        let hierarchy = self.hierarchy.as_ref();
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        let record = ExitRecord {
            pid: c.pid.as_raw() as u32,
            exit_code: code,
            started_at: c.started_at,
            finished_at: SystemTime::now(),
            oom_killed: hierarchy.is_some_and(|h| h.oom_kills(&c.cgroup) > 0),
            lost: false,
        };
        let path = c.state_dir.join("exit.json");
        if let Err(e) = crate::youki::records::save(&path, &record) {
            eprintln!("recording the exit of {id}: {e}");
        }
        c.exit = Some(record);
        c.drained_by = Some(Instant::now() + DRAIN_GRACE);
        // Nobody reads it any more.
        c.stdin = None;
        if !c.own_pid_namespace {
            for pid in hierarchy.map(|h| h.procs(&c.cgroup)).unwrap_or_default() {
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
    }

    /// Enforces exec deadlines and the output grace periods; replies to finished execs.
    fn expire(&mut self) {
        let now = Instant::now();
        for job in &mut self.execs {
            job.enforce_deadline(now);
        }
        let mut j = 0;
        while j < self.execs.len() {
            if self.execs[j].finished(now) {
                self.execs.swap_remove(j).reply();
            } else {
                j += 1;
            }
        }
        for c in self.containers.values_mut() {
            if c.drained_by.is_some_and(|d| now >= d) && c.pipes.iter().any(Option::is_some) {
                c.close_pipes();
            }
        }
    }

    /// The attached client `k` of the container `id`.
    fn client(&mut self, id: &str, k: usize) -> Option<&mut super::fanout::Attached> {
        self.containers.get_mut(id)?.attached.get_mut(k)
    }

    /// Answers every `Wait` whose container is done (or gone), and lets the attached
    /// clients of such containers go; drops the clients that detached or fell behind.
    pub(super) fn answer_waiters(&mut self) {
        let now = Instant::now();
        for c in self.containers.values_mut() {
            c.settle_attached(now, DRAIN_GRACE);
        }
        let mut keep = Vec::new();
        for (id, mut conn) in std::mem::take(&mut self.waiters) {
            let reply = match self.containers.get(&id) {
                Some(c) if c.done() => c.exit.as_ref().map(|e| reply::Kind::Exit(exit_message(e))),
                Some(_) => {
                    keep.push((id, conn));
                    continue;
                }
                None => Some(handlers::not_found(&id)),
            };
            let _ = wire::write_msg(&mut conn, &Reply { kind: reply });
        }
        self.waiters = keep;
    }

    /// Takes every pending connection and handles its request.
    fn accept(&mut self) {
        loop {
            let mut conn = match self.listener.accept() {
                Ok((conn, _)) => conn,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    eprintln!("accept: {e}");
                    return;
                }
            };
            // Clients are local and write their request at once; one that stalls must
            // not stall the pod.
            let _ = conn.set_nonblocking(false);
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = conn.set_write_timeout(Some(Duration::from_secs(10)));
            let request: Request = match wire::read_msg(&mut conn) {
                Ok(r) => r,
                Err(e) => {
                    let fail = Error::Invalid(format!("bad request: {e}"));
                    let _ = wire::write_msg(&mut conn, &handlers::error_reply(fail));
                    continue;
                }
            };
            if let Some((mut conn, reply)) = self.handle(request, conn) {
                let _ = wire::write_msg(&mut conn, &reply);
            }
        }
    }

    /// Handles one request; `None` when its answer is deferred (Wait, Exec).
    fn handle(&mut self, request: Request, conn: UnixStream) -> Option<(UnixStream, Reply)> {
        let result = match request.kind {
            None => Err(Error::Invalid("empty request".to_string())),
            Some(request::Kind::Ping(_)) => Ok(reply::Kind::Pong(self.pong())),
            Some(request::Kind::Create(r)) => self.create(r),
            Some(request::Kind::Start(r)) => self.start(&r.id),
            Some(request::Kind::State(r)) => self.state(&r.id),
            Some(request::Kind::Wait(r)) => {
                self.waiters.push((r.id, conn));
                return None;
            }
            Some(request::Kind::Exec(r)) => match self.exec(r, conn) {
                Ok(()) => return None,
                Err((conn, fail)) => return Some((conn, handlers::error_reply(fail))),
            },
            Some(request::Kind::ExecStream(r)) => match self.exec_stream(r, conn) {
                Ok(()) => return None,
                Err((conn, fail)) => return Some((conn, handlers::error_reply(fail))),
            },
            Some(request::Kind::Attach(r)) => match self.attach(r, conn) {
                Ok(()) => return None,
                Err((conn, fail)) => return Some((conn, handlers::error_reply(fail))),
            },
            Some(request::Kind::Kill(r)) => self.kill(&r.id, r.signal, r.all),
            Some(request::Kind::Delete(r)) => self.delete(&r.id),
            Some(request::Kind::ReopenLog(r)) => self.reopen_log(&r.id),
            Some(request::Kind::Shutdown(_)) => self.shut_down(),
        };
        let reply = match result {
            Ok(kind) => Reply { kind: Some(kind) },
            Err(fail) => handlers::error_reply(fail),
        };
        Some((conn, reply))
    }

    fn pong(&self) -> Pong {
        let (rss_kib, pss_kib) = memory_kib();
        Pong {
            version: super::PROTOCOL_VERSION,
            pid: std::process::id(),
            pid_ns_holder: self.holder.map(|p| p.as_raw() as u32).unwrap_or(0),
            containers: self.containers.keys().cloned().collect(),
            rss_kib,
            pss_kib,
        }
    }

    /// The libcontainer state root.
    pub(super) fn root(&self) -> &Path {
        &self.root
    }
}

/// This process's resident and proportional set sizes, in KiB.
fn memory_kib() -> (u64, u64) {
    let field = |file: &str, key: &str| {
        fs::read_to_string(file)
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with(key))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    };
    (
        field("/proc/self/status", "VmRSS:"),
        field("/proc/self/smaps_rollup", "Pss:"),
    )
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use berth_proto::supervisor::error::Code;
    use berth_proto::supervisor::{Kill, ReopenLog, Shutdown, Start, State, Wait};

    use super::*;

    /// A supervisor serving `<dir>/shim.sock`, without the process-wide parts of
    /// `bind` (no SIGCHLD handler: the test process's children are not its to reap;
    /// no PID-namespace holder; no cgroups).
    fn supervisor(dir: &Path) -> Supervisor {
        let listener = UnixListener::bind(dir.join("shim.sock")).unwrap();
        listener.set_nonblocking(true).unwrap();
        let (sigchld, _) = nix::unistd::pipe().unwrap();
        Supervisor {
            pod_dir: dir.to_path_buf(),
            root: dir.join("libcontainer"),
            hierarchy: None,
            listener,
            sigchld,
            holder: None,
            containers: BTreeMap::new(),
            execs: Vec::new(),
            sessions: Vec::new(),
            waiters: Vec::new(),
            shutdown: false,
        }
    }

    fn code_of(reply: &Reply) -> Option<Code> {
        match &reply.kind {
            Some(reply::Kind::Error(e)) => Code::try_from(e.code).ok(),
            _ => None,
        }
    }

    /// What `s` answers to `kind` at once.
    fn answer(s: &mut Supervisor, kind: request::Kind) -> Reply {
        let (conn, _client) = UnixStream::pair().unwrap();
        let request = Request { kind: Some(kind) };
        s.handle(request, conn).expect("answered at once").1
    }

    #[test]
    fn requests_about_an_unknown_container_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = supervisor(dir.path());
        let id = || "web-app-0-on-n".to_string();
        for kind in [
            request::Kind::Start(Start { id: id() }),
            request::Kind::State(State { id: id() }),
            request::Kind::Kill(Kill {
                id: id(),
                signal: 15,
                all: false,
            }),
            request::Kind::ReopenLog(ReopenLog { id: id() }),
        ] {
            let reply = answer(&mut s, kind.clone());
            assert_eq!(code_of(&reply), Some(Code::NotFound), "{kind:?}: {reply:?}");
            let Some(reply::Kind::Error(e)) = reply.kind else {
                unreachable!()
            };
            assert!(e.message.contains("web-app-0-on-n"), "{}", e.message);
        }
    }

    #[test]
    fn an_empty_request_is_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = supervisor(dir.path());
        let (conn, _client) = UnixStream::pair().unwrap();
        let (_, reply) = s.handle(Request { kind: None }, conn).unwrap();
        assert_eq!(code_of(&reply), Some(Code::Invalid));
    }

    #[test]
    fn a_wait_for_an_unknown_container_is_deferred_then_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = supervisor(dir.path());
        let (conn, mut client) = UnixStream::pair().unwrap();
        let wait = request::Kind::Wait(Wait { id: "gone".into() });
        assert!(s.handle(Request { kind: Some(wait) }, conn).is_none());
        assert_eq!(s.waiters.len(), 1);
        s.answer_waiters();
        assert!(s.waiters.is_empty());
        let reply: Reply = wire::read_msg(&mut client).unwrap();
        assert_eq!(code_of(&reply), Some(Code::NotFound));
    }

    #[test]
    fn over_the_socket_a_ping_is_answered_and_garbage_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = supervisor(dir.path());
        let mut ping = UnixStream::connect(dir.path().join("shim.sock")).unwrap();
        let request = Request {
            kind: Some(request::Kind::Ping(Default::default())),
        };
        wire::write_msg(&mut ping, &request).unwrap();
        let mut garbage = UnixStream::connect(dir.path().join("shim.sock")).unwrap();
        garbage.write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff]).unwrap();
        s.accept();

        let reply: Reply = wire::read_msg(&mut ping).unwrap();
        let Some(reply::Kind::Pong(pong)) = reply.kind else {
            panic!("{reply:?}")
        };
        assert_eq!(pong.version, crate::supervisor::PROTOCOL_VERSION);
        assert_eq!(pong.pid, std::process::id());
        assert_eq!((pong.pid_ns_holder, pong.containers.len()), (0, 0));
        let reply: Reply = wire::read_msg(&mut garbage).unwrap();
        assert_eq!(code_of(&reply), Some(Code::Invalid), "{reply:?}");
    }

    #[test]
    fn shutdown_removes_the_socket_and_ends_the_loop() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = supervisor(dir.path());
        let reply = answer(&mut s, request::Kind::Shutdown(Shutdown {}));
        assert!(
            matches!(reply.kind, Some(reply::Kind::Done(_))),
            "{reply:?}"
        );
        assert!(s.shutdown);
        assert!(!dir.path().join("shim.sock").exists());
    }

    #[test]
    fn the_exit_of_the_holder_is_noted_and_an_unknown_child_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = supervisor(dir.path());
        s.holder = Some(Pid::from_raw(4242));
        s.child_exited(Pid::from_raw(777), 0);
        assert_eq!(s.holder, Some(Pid::from_raw(4242)));
        s.child_exited(Pid::from_raw(4242), 137);
        assert_eq!(s.holder, None);
        let reply = answer(&mut s, request::Kind::Ping(Default::default()));
        let Some(reply::Kind::Pong(pong)) = reply.kind else {
            panic!("{reply:?}")
        };
        assert_eq!(pong.pid_ns_holder, 0);
    }
}
