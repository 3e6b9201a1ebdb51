//! A fake [`Link`]: plays each pod's supervisor in memory (its containers and their
//! states) and dies where told, mid-call: the request is taken, no answer comes, and
//! every later call finds nobody, as when the real one is killed while it works.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_proto::supervisor::container_state::Status;
use berth_proto::supervisor::error::Code;
use berth_proto::supervisor::{
    reply, request, ContainerState, Created, Done, Exec, ExecResult, Exit, Pong, Started,
};

use crate::error::Result;
use crate::supervisor::{Args, PROTOCOL_VERSION};

use super::super::client::{CallError, Link, Session};

/// A container as its fake supervisor holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakeContainer {
    /// Its state.
    pub status: Status,
    /// Its init's pid.
    pub pid: u32,
    /// Its exit code, once exited.
    pub exit_code: i32,
}

/// The supervisors of every pod, by pod key; a pod missing here has none running.
#[derive(Default)]
pub struct FakeSupervisors {
    running: Mutex<BTreeMap<String, BTreeMap<String, FakeContainer>>>,
    /// Every request, in order: `<pod key> <request>` (`web-… Create`).
    pub calls: Mutex<Vec<String>>,
    /// `(pod key, request)`: that pod's supervisor dies on taking that request.
    pub deaths: Mutex<BTreeSet<(String, &'static str)>>,
    /// How many of the next supervisors fail to start.
    pub failing_spawns: Mutex<usize>,
}

fn name(request: &request::Kind) -> &'static str {
    match request {
        request::Kind::Ping(_) => "Ping",
        request::Kind::Create(_) => "Create",
        request::Kind::Start(_) => "Start",
        request::Kind::State(_) => "State",
        request::Kind::Wait(_) => "Wait",
        request::Kind::Exec(_) => "Exec",
        request::Kind::Kill(_) => "Kill",
        request::Kind::Delete(_) => "Delete",
        request::Kind::ReopenLog(_) => "ReopenLog",
        request::Kind::Shutdown(_) => "Shutdown",
        request::Kind::ExecStream(_) => "ExecStream",
        request::Kind::Attach(_) => "Attach",
    }
}

fn now() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(since.as_nanos()).unwrap()
}

fn refused(code: Code, message: &str) -> CallError {
    CallError::Refused(code, message.to_string())
}

impl FakeSupervisors {
    /// Starts the supervisor of the pod `pod` (a pod key), with no container.
    pub fn start(&self, pod: &str) {
        self.running
            .lock()
            .unwrap()
            .insert(pod.to_string(), BTreeMap::new());
    }

    /// True while the supervisor of `pod` runs.
    pub fn runs(&self, pod: &str) -> bool {
        self.running.lock().unwrap().contains_key(pod)
    }

    /// Has the running supervisor of `pod` hold the container `id` (a container key).
    pub fn hold(&self, pod: &str, id: &str, container: FakeContainer) {
        let mut running = self.running.lock().unwrap();
        let held = running.get_mut(pod).expect("the pod's supervisor runs");
        held.insert(id.to_string(), container);
    }

    /// The containers the supervisor of `pod` holds (none when it is not running).
    pub fn held(&self, pod: &str) -> BTreeMap<String, FakeContainer> {
        let running = self.running.lock().unwrap();
        running.get(pod).cloned().unwrap_or_default()
    }

    /// Makes the supervisor of `pod` die when it takes a `request` (`"Create"`, …).
    pub fn die_on(&self, pod: &str, request: &'static str) {
        self.deaths
            .lock()
            .unwrap()
            .insert((pod.to_string(), request));
    }

    /// The requests made so far to the supervisor of `pod`, by name.
    pub fn calls_to(&self, pod: &str) -> Vec<String> {
        let prefix = format!("{pod} ");
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter_map(|c| c.strip_prefix(&prefix).map(str::to_string))
            .collect()
    }

    /// What the supervisor holding `held` answers to `request`.
    fn answer(
        held: &mut BTreeMap<String, FakeContainer>,
        request: request::Kind,
    ) -> std::result::Result<reply::Kind, CallError> {
        let found = |held: &mut BTreeMap<String, FakeContainer>, id: &str| {
            held.get(id)
                .copied()
                .ok_or_else(|| refused(Code::NotFound, id))
        };
        Ok(match request {
            request::Kind::Ping(_) => reply::Kind::Pong(Pong {
                version: PROTOCOL_VERSION,
                pid: 0,
                pid_ns_holder: 1,
                containers: held.keys().cloned().collect(),
                ..Default::default()
            }),
            request::Kind::Create(c) => {
                if held.contains_key(&c.id) {
                    return Err(refused(Code::AlreadyExists, &c.id));
                }
                let pid = 1000 + u32::try_from(held.len()).unwrap();
                let container = FakeContainer {
                    status: Status::Created,
                    pid,
                    exit_code: 0,
                };
                held.insert(c.id, container);
                reply::Kind::Created(Created { pid })
            }
            request::Kind::Start(s) => {
                let mut c = found(held, &s.id)?;
                if c.status != Status::Created {
                    return Err(refused(Code::FailedPrecondition, "not created"));
                }
                c.status = Status::Running;
                held.insert(s.id, c);
                reply::Kind::Started(Started { started_at: now() })
            }
            request::Kind::State(s) => {
                let c = found(held, &s.id)?;
                let exited = c.status == Status::Exited;
                reply::Kind::State(ContainerState {
                    status: c.status as i32,
                    pid: if exited { 0 } else { c.pid },
                    exit: exited.then(|| Exit {
                        exit_code: c.exit_code,
                        finished_at: now(),
                        pid: c.pid,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
            }
            request::Kind::Kill(k) => {
                let mut c = found(held, &k.id)?;
                if c.status != Status::Exited {
                    c.status = Status::Exited;
                    c.exit_code = 128 + k.signal;
                }
                held.insert(k.id, c);
                reply::Kind::Done(Done {})
            }
            request::Kind::Wait(w) => {
                let c = found(held, &w.id)?;
                if c.status != Status::Exited {
                    return Err(CallError::Io(std::io::ErrorKind::WouldBlock.into()));
                }
                reply::Kind::Exit(Exit {
                    exit_code: c.exit_code,
                    pid: c.pid,
                    ..Default::default()
                })
            }
            request::Kind::Exec(Exec { id, args, .. }) => {
                if found(held, &id)?.status != Status::Running {
                    return Err(refused(Code::FailedPrecondition, "not running"));
                }
                reply::Kind::Exec(ExecResult {
                    stdout: args.join(" ").into_bytes(),
                    ..Default::default()
                })
            }
            request::Kind::Delete(d) => {
                held.remove(&d.id);
                reply::Kind::Done(Done {})
            }
            request::Kind::ReopenLog(r) => {
                found(held, &r.id)?;
                reply::Kind::Done(Done {})
            }
            request::Kind::Shutdown(_) => unreachable!("handled by call"),
            request::Kind::ExecStream(_) | request::Kind::Attach(_) => {
                return Err(refused(Code::Internal, "the fake has no sessions"))
            }
        })
    }
}

/// The pod key of a supervisor socket (`<pods_run>/<key>/shim.sock`).
fn pod_of(socket: &Path) -> String {
    let dir = socket.parent().and_then(Path::file_name).unwrap();
    dir.to_string_lossy().into_owned()
}

impl Link for FakeSupervisors {
    fn call(
        &self,
        socket: &Path,
        request: request::Kind,
        _timeout: Duration,
    ) -> std::result::Result<reply::Kind, CallError> {
        let (pod, what) = (pod_of(socket), name(&request));
        self.calls.lock().unwrap().push(format!("{pod} {what}"));
        let mut running = self.running.lock().unwrap();
        if !running.contains_key(&pod) {
            return Err(CallError::Gone);
        }
        if self.deaths.lock().unwrap().remove(&(pod.clone(), what))
            || matches!(request, request::Kind::Shutdown(_))
        {
            running.remove(&pod);
            return match request {
                request::Kind::Shutdown(_) => Ok(reply::Kind::Done(Done {})),
                _ => Err(CallError::Gone),
            };
        }
        Self::answer(running.get_mut(&pod).unwrap(), request)
    }

    fn session(
        &self,
        socket: &Path,
        request: request::Kind,
        timeout: Duration,
    ) -> std::result::Result<Session, CallError> {
        let answer = self.call(socket, request, timeout)?;
        Err(super::super::client::unexpected(answer))
    }

    fn spawn(&self, _exe: &Path, args: &Args) -> Result<()> {
        let pod = args.pod_dir.file_name().unwrap().to_string_lossy();
        self.calls.lock().unwrap().push(format!("{pod} spawn"));
        {
            let mut failing = self.failing_spawns.lock().unwrap();
            if *failing > 0 {
                *failing -= 1;
                let fault = std::io::Error::other("injected fault");
                return Err(crate::error::Error::io("starting the supervisor", fault));
            }
        }
        self.start(&pod);
        Ok(())
    }
}
