//! StopContainer: the stop signal, then SIGKILL after the grace period, as containerd's
//! CRI plugin. Stopping a stopped container succeeds.

use std::time::Duration;

use containerd_client::services::v1::{KillRequest, WaitRequest};
use nix::sys::signal::Signal;

use super::object_id as key;
use super::status::TaskState;
use super::Containerd;
use crate::error::Result;
use crate::id::ContainerId;

/// How long a SIGKILLed container may take to be reaped.
pub(super) const KILL_PATIENCE: Duration = Duration::from_secs(30);

impl Containerd {
    /// StopContainer.
    pub async fn stop_container(&self, id: &ContainerId, timeout: Duration) -> Result<()> {
        let _guard = self.lock(id).await;
        let record = self.record(id)?;
        if !matches!(self.task_state(&record).await?, TaskState::Running { .. }) {
            return Ok(());
        }
        if !timeout.is_zero() && record.stop_signal != Signal::SIGKILL as i32 {
            self.kill(id, record.stop_signal as u32).await?;
            if self.wait(id, timeout).await? {
                return Ok(());
            }
        }
        self.kill(id, Signal::SIGKILL as u32).await?;
        self.wait(id, KILL_PATIENCE).await?;
        Ok(())
    }

    /// Sends `signal` to the container's process (all of its processes for SIGKILL);
    /// a process that is gone already is no failure.
    pub(super) async fn kill(&self, id: &ContainerId, signal: u32) -> Result<()> {
        let killed = self
            .tasks()
            .kill(self.request(KillRequest {
                container_id: key(id),
                exec_id: String::new(),
                signal,
                all: signal == Signal::SIGKILL as u32,
            }))
            .await;
        match killed {
            Ok(_) => Ok(()),
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::NotFound | tonic::Code::FailedPrecondition
                ) =>
            {
                Ok(())
            }
            Err(s) => Err(self.fail(format!("signalling {id}"), &s)),
        }
    }

    /// Waits up to `patience` for the container's process to exit; false if it still
    /// runs.
    pub(super) async fn wait(&self, id: &ContainerId, patience: Duration) -> Result<bool> {
        let mut request = self.request(WaitRequest {
            container_id: key(id),
            exec_id: String::new(),
        });
        request.set_timeout(patience + Duration::from_secs(1));
        let waited = tokio::time::timeout(patience, self.tasks().wait(request)).await;
        match waited {
            Err(_) => Ok(false),
            Ok(Ok(_)) => Ok(true),
            Ok(Err(s)) if s.code() == tonic::Code::NotFound => Ok(true),
            Ok(Err(s)) if s.code() == tonic::Code::DeadlineExceeded => Ok(false),
            Ok(Err(s)) => Err(self.fail(format!("waiting for {id}"), &s)),
        }
    }
}
