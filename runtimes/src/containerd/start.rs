//! StartContainer: start the container's task.

use std::time::SystemTime;

use containerd_client::services::v1::StartRequest;

use super::object_id as key;
use super::records::Phase;
use super::Containerd;
use crate::error::{Error, Result};
use crate::id::ContainerId;

impl Containerd {
    /// StartContainer.
    pub async fn start_container(&self, id: &ContainerId) -> Result<()> {
        let _guard = self.lock(id).await;
        let mut record = self.record(id)?;
        if record.phase != Phase::Created || record.started_at.is_some() {
            return Err(Error::FailedPrecondition(format!(
                "StartContainer {id}: the container is not in the created state"
            )));
        }
        self.tasks()
            .start(self.request(StartRequest {
                container_id: key(id),
                exec_id: String::new(),
            }))
            .await
            .map_err(|s| self.fail(format!("starting {id}"), &s))?;
        // The shim holds the output FIFOs now: their end is the task's.
        self.held().remove(id);
        record.started_at = Some(SystemTime::now());
        self.save(&record)
    }
}
