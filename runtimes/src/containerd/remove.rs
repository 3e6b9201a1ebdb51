//! RemoveContainer: kill it if it runs, mark its record as being removed, then delete
//! its task and container from containerd, unmount its rootfs and drop its record in
//! the background, as containerd's CRI plugin has done that work at StopContainer.
//! Idempotent; a missing container is removed. The marked record keeps the work owed:
//! the pod's removal, a create of the same id and berth's next start finish it.

use std::sync::Arc;

use nix::sys::signal::Signal;
use tracing::Instrument;

use super::records::Phase;
use super::status::TaskState;
use super::stop::KILL_PATIENCE;
use super::Containerd;
use crate::error::{Error, Result};
use crate::id::ContainerId;

impl Containerd {
    /// RemoveContainer: answers once the container is dead and marked; its teardown
    /// (the shim's exit, the rootfs unmount, which syncs the upper layer's file
    /// system) goes on holding the container's lock, so nothing else touches it
    /// meanwhile.
    pub async fn remove_container(self: &Arc<Self>, id: &ContainerId) -> Result<()> {
        let guard = self.lock(id).await;
        let Some(mut record) = self.index().get(id).cloned() else {
            return Ok(());
        };
        if record.phase == Phase::Removing {
            // An earlier teardown failed: its error is this call's.
            return self.undo_create(id).await;
        }
        self.kill_if_running(&record.id).await?;
        record.phase = Phase::Removing;
        self.save(&record)?;
        let me = self.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let _guard = guard;
            if let Err(e) = me.undo_create(&id).await {
                tracing::warn!(container = %id, error = %e, "containerd: removing a container left work for the pod's removal");
            }
        }.in_current_span());
        Ok(())
    }

    /// Removes `id` now, whatever state it is in (the pod's removal).
    pub(super) async fn remove_now(&self, id: &ContainerId) -> Result<()> {
        let _guard = self.lock(id).await;
        if !self.index().contains_key(id) {
            return Ok(());
        }
        self.kill_if_running(id).await?;
        self.undo_create(id).await
    }

    /// SIGKILLs the container's processes if its task runs, and waits for its exit.
    /// A task whose state cannot be read, or that outlives the wait, fails the call:
    /// a container that may still run is never answered as removed.
    async fn kill_if_running(&self, id: &ContainerId) -> Result<()> {
        let Ok(record) = self.record(id) else {
            return Ok(());
        };
        if let TaskState::Running { .. } = self.task_state(&record).await? {
            self.kill(id, Signal::SIGKILL as u32).await?;
            if !self.wait(id, KILL_PATIENCE).await? {
                return Err(Error::DeadlineExceeded {
                    operation: format!("RemoveContainer {id}: its process's exit after SIGKILL"),
                    after: KILL_PATIENCE,
                });
            }
        }
        Ok(())
    }
}
