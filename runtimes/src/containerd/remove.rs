//! RemoveContainer: kill it if it runs, delete its task and container from containerd,
//! unmount its rootfs, drop its record. Idempotent; a missing container is removed.

use std::time::Duration;

use nix::sys::signal::Signal;

use super::status::TaskState;
use super::Containerd;
use crate::error::Result;
use crate::id::ContainerId;

impl Containerd {
    /// RemoveContainer.
    pub async fn remove_container(&self, id: &ContainerId) -> Result<()> {
        let _guard = self.lock(id).await;
        let Ok(record) = self.record(id) else {
            return Ok(());
        };
        if let Ok(TaskState::Running { .. }) = self.task_state(&record).await {
            self.kill(id, Signal::SIGKILL as u32).await?;
            self.wait(id, Duration::from_secs(30)).await?;
        }
        self.undo_create(id).await
    }
}
