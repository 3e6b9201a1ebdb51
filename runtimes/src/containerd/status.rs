//! ContainerStatus: containerd's view of the task (pid, state, exit), with what berth
//! recorded (creation, start, user). An exit seen once is recorded, so it outlives the
//! task; a containerd that cannot be reached gives the last known state as `Unknown`.

use std::time::{Duration, SystemTime};

use containerd_client::services::v1::GetRequest;
use containerd_client::types::v1::Status;

use super::object_id as key;
use super::records::{Exit, Phase, Record};
use super::Containerd;
use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::types::{ContainerState, ContainerStatus};

/// What containerd says of a container's task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// No task (never made, or deleted).
    Missing,
    /// Created, not started.
    Created,
    /// Running as `pid`.
    Running {
        /// The host pid.
        pid: u32,
    },
    /// Exited.
    Exited(Exit),
}

impl Containerd {
    /// The task of `record` as containerd sees it now.
    pub(super) async fn task_state(&self, record: &Record) -> Result<TaskState> {
        let got = self
            .tasks()
            .get(self.request(GetRequest {
                container_id: key(&record.id),
                exec_id: String::new(),
            }))
            .await;
        let process = match got {
            Ok(reply) => reply.into_inner().process,
            Err(s) if s.code() == tonic::Code::NotFound => None,
            Err(s) => return Err(self.fail(format!("reading the task of {}", record.id), &s)),
        };
        let Some(process) = process else {
            return Ok(TaskState::Missing);
        };
        Ok(match Status::try_from(process.status) {
            Ok(Status::Created) => TaskState::Created,
            Ok(Status::Running) | Ok(Status::Paused) | Ok(Status::Pausing) => {
                TaskState::Running { pid: process.pid }
            }
            _ => TaskState::Exited(Exit {
                code: process.exit_status as i32,
                at: process
                    .exited_at
                    .and_then(|t| to_system_time(&t))
                    .unwrap_or_else(SystemTime::now),
                oom_killed: false,
            }),
        })
    }

    /// ContainerStatus.
    pub async fn container_status(&self, id: &ContainerId) -> Result<ContainerStatus> {
        let record = self.record(id)?;
        let mut status = ContainerStatus {
            user: record.user.clone(),
            started_at: record.started_at,
            ..Default::default()
        };
        let state = match self.task_state(&record).await {
            Ok(state) => state,
            Err(e @ Error::Unavailable { .. }) => {
                status.state = ContainerState::Unknown;
                status.message = e.to_string();
                if let Some(exit) = record.exit {
                    exited(&mut status, exit);
                }
                return Ok(status);
            }
            Err(e) => return Err(e),
        };
        match state {
            TaskState::Created => status.state = ContainerState::Created,
            TaskState::Running { pid } => {
                status.state = ContainerState::Running;
                status.pid = Some(pid);
            }
            TaskState::Exited(mut exit) => {
                match record.exit {
                    Some(known) if (known.code, known.at) == (exit.code, exit.at) => exit = known,
                    _ => {
                        exit.oom_killed = self.sandboxes.oom_kills(&record.cgroup) > 0;
                        let _guard = self.lock(id).await;
                        if let Ok(mut fresh) = self.record(id) {
                            fresh.exit = Some(exit);
                            self.save(&fresh)?;
                        }
                    }
                }
                exited(&mut status, exit);
            }
            TaskState::Missing if record.phase == Phase::Creating => {
                status.state = ContainerState::Created;
            }
            TaskState::Missing => {
                // The task went away without berth deleting it (containerd's state
                // lost): the recorded exit, else an unknown one.
                let exit = record.exit.unwrap_or(Exit {
                    code: 255,
                    at: SystemTime::now(),
                    oom_killed: false,
                });
                exited(&mut status, exit);
                if record.exit.is_none() {
                    status.reason = "Unknown".into();
                    status.message = "containerd no longer knows the container's task".into();
                }
            }
        }
        Ok(status)
    }
}

fn exited(status: &mut ContainerStatus, exit: Exit) {
    status.state = ContainerState::Exited;
    status.pid = None;
    status.exit_code = exit.code;
    status.finished_at = Some(exit.at);
    status.reason = if exit.oom_killed {
        "OOMKilled"
    } else if exit.code == 0 {
        "Completed"
    } else {
        "Error"
    }
    .into();
}

/// A protobuf timestamp as a `SystemTime` (containerd's zero time is none).
pub fn to_system_time(t: &prost_types::Timestamp) -> Option<SystemTime> {
    if t.seconds <= 0 {
        return None;
    }
    Some(SystemTime::UNIX_EPOCH + Duration::new(t.seconds as u64, t.nanos.max(0) as u32))
}
