//! ContainerStatus and ContainerStats.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_proto::supervisor::{container_state::Status, error::Code, reply, request, State};

use crate::error::Result;
use crate::id::ContainerId;
use crate::types::{ContainerState, ContainerStats, ContainerStatus};

use super::super::backend::{blocking, Backend};
use super::super::client::{unexpected, CallError};
use super::super::clock::from_nanos;
use super::super::layout::key;
use super::super::records::{self, ContainerPhase, ContainerRecord, ExitRecord};
use super::super::stats::Depth;
use super::super::{rootfs, stats};
use super::reason;

impl Backend {
    /// The container `id` as its supervisor (or, when that is gone, its exit record)
    /// knows it.
    pub async fn container_status(self: &Arc<Self>, id: &ContainerId) -> Result<ContainerStatus> {
        let record = self.container(id)?;
        let me = self.clone();
        blocking(move || me.status_blocking(&record)).await
    }

    /// The state of each of `ids`, without asking their supervisors: a container has
    /// exited once its exit record exists (its supervisor writes it before anyone can
    /// hear of the exit) or once its pod's supervisor is gone (its pidfd says so), and
    /// runs once started otherwise. One stat per container on one blocking task, where
    /// [`Backend::container_status`] is a socket round trip each; listings ask this on
    /// every request. A pod whose supervisor is not watched is asked as
    /// `container_status` would.
    pub async fn container_states(
        self: &Arc<Self>,
        ids: &[ContainerId],
    ) -> Vec<Result<ContainerState>> {
        let me = self.clone();
        let ids = ids.to_vec();
        let n = ids.len();
        let states = blocking(move || {
            // What the pass needs of each record, under one lock of the index.
            let known: Vec<_> = {
                let index = me.index();
                ids.iter()
                    .map(|id| {
                        index
                            .containers
                            .get(id)
                            .map(|r| (r.pod.clone(), r.phase, r.started_at.is_some()))
                    })
                    .collect()
            };
            let mut supervisors: HashMap<ContainerId, Option<bool>> = HashMap::new();
            Ok(ids
                .iter()
                .zip(known)
                .map(|(id, known)| {
                    let Some((pod, phase, started)) = known else {
                        return Err(crate::error::Error::not_found("container", id));
                    };
                    if phase == ContainerPhase::Creating {
                        return Ok(ContainerState::Created);
                    }
                    if me.layout.exit_record(&key(id)).exists() {
                        return Ok(ContainerState::Exited);
                    }
                    let runs = *supervisors
                        .entry(pod)
                        .or_insert_with_key(|pod| me.supervisors.running(pod));
                    match runs {
                        Some(true) if started => Ok(ContainerState::Running),
                        Some(true) => Ok(ContainerState::Created),
                        _ => me.status_blocking(&me.container(id)?).map(|s| s.state),
                    }
                })
                .collect::<Vec<_>>())
        })
        .await;
        match states {
            Ok(states) => states,
            Err(e) => {
                let message = e.to_string();
                (0..n)
                    .map(|_| Err(crate::error::Error::backend("youki", message.clone())))
                    .collect()
            }
        }
    }

    fn status_blocking(&self, record: &ContainerRecord) -> Result<ContainerStatus> {
        let k = key(&record.id);
        let name = record.id.to_string();
        let mut status = ContainerStatus {
            user: record.user.clone(),
            started_at: record.started_at,
            ..Default::default()
        };
        let state = request::Kind::State(State { id: k.clone() });
        match self
            .supervisor(&record.pod)
            .call(state, Duration::from_secs(10))
        {
            Ok(reply::Kind::State(s)) => {
                status.pid = (s.pid != 0).then_some(s.pid);
                status.started_at = from_nanos(s.started_at).or(record.started_at);
                status.state = match Status::try_from(s.status) {
                    Ok(Status::Created) => ContainerState::Created,
                    Ok(Status::Running) => ContainerState::Running,
                    _ => ContainerState::Exited,
                };
                if let Some(exit) = s.exit {
                    let exit = ExitRecord {
                        pid: exit.pid,
                        exit_code: exit.exit_code,
                        started_at: from_nanos(exit.started_at),
                        finished_at: from_nanos(exit.finished_at).unwrap_or(SystemTime::now()),
                        oom_killed: exit.oom_killed,
                        lost: false,
                    };
                    exited(&mut status, &exit);
                }
            }
            Ok(other) => return Err(unexpected(other).into_error("container", &name)),
            Err(CallError::Gone) | Err(CallError::Refused(Code::NotFound, _)) => {
                if record.phase == ContainerPhase::Creating {
                    status.state = ContainerState::Created;
                    return Ok(status);
                }
                // The supervisor is gone: the recorded exit, or a lost one.
                let path = self.layout.exit_record(&k);
                let exit = match records::load::<ExitRecord>(&path)? {
                    Some(exit) => exit,
                    None => {
                        self.bury_container(record)?;
                        records::load::<ExitRecord>(&path)?
                            .unwrap_or_else(|| ExitRecord::lost(record.started_at))
                    }
                };
                exited(&mut status, &exit);
            }
            Err(e) => return Err(e.into_error("container", &name)),
        }
        Ok(status)
    }

    /// Resource usage of the container `id` (to `depth`) and its writable layer.
    pub async fn container_stats(
        self: &Arc<Self>,
        id: &ContainerId,
        depth: Depth,
    ) -> Result<ContainerStats> {
        let record = self.container(id)?;
        let me = self.clone();
        blocking(move || {
            let usage = stats::read(&me.hierarchy, &record.cgroup, depth);
            let upper = rootfs::upper(&me.layout.rootfs(&key(&record.id)));
            let layer = crate::image::usage::usage(&upper)?;
            let detail = match depth {
                Depth::Stats => usage.detail,
                Depth::Metrics => crate::image::usage::with_fs_capacity(usage.detail, &upper),
            };
            Ok(ContainerStats {
                timestamp: SystemTime::now(),
                cpu_usage_ns: usage.cpu_ns,
                memory: usage.memory,
                writable_layer: upper,
                writable_layer_bytes: layer.used_bytes,
                writable_layer_inodes: layer.inodes_used,
                detail,
            })
        })
        .await
    }
}

/// Fills `status` from an exit.
fn exited(status: &mut ContainerStatus, exit: &ExitRecord) {
    status.state = ContainerState::Exited;
    status.pid = None;
    status.exit_code = exit.exit_code;
    status.finished_at = Some(exit.finished_at);
    status.started_at = exit.started_at.or(status.started_at);
    status.reason = reason(exit).to_string();
    if exit.lost {
        status.message =
            "the pod's supervisor ended before the container, which berth then killed; its exit status is unknown".into();
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::fake::Fixture;
    use super::*;

    #[tokio::test]
    async fn states_come_from_exit_records_and_ask_only_unwatched_supervisors() {
        let f = Fixture::new();
        let pod = f.live_pod("web");
        let app = f.container(&pod, "app");
        let done = f.container(&pod, "done");
        let exit = ExitRecord::lost(None);
        records::save(&f.backend.layout.exit_record(&key(&done)), &exit).unwrap();
        let unknown = pod.with_role("nope").unwrap();
        let states = f
            .backend
            .container_states(&[app.clone(), done.clone(), unknown])
            .await;
        // The fixture's supervisors have no pidfd: `app`'s is asked, as ContainerStatus.
        assert_eq!(*states[0].as_ref().unwrap(), ContainerState::Created);
        assert_eq!(*states[1].as_ref().unwrap(), ContainerState::Exited);
        assert!(states[2].as_ref().unwrap_err().is_not_found());
        let asked = f.supervisors.calls_to(&key(&pod));
        assert_eq!(asked, ["State"], "only about `app`");
    }
}
