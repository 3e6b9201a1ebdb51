//! RemoveContainer, and the cleanup shared with a failed CreateContainer, a removed
//! pod and recovery. Every step is idempotent and runs even when one failed.

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::supervisor::{error::Code, request, Delete};

use crate::error::{Error, Result};
use crate::id::ContainerId;

use super::super::backend::{blocking, Backend};
use super::super::client::{CallError, CALL_TIMEOUT};
use super::super::layout::key;
use super::super::records::{self, ContainerRecord, ExitRecord};
use super::super::NAME;

impl Backend {
    /// Removes the container `id` (killing it if it runs); a missing one is removed
    /// already.
    pub async fn remove_container(self: &Arc<Self>, id: &ContainerId) -> Result<()> {
        let _guard = self.lock(&key(id)).await;
        let Some(record) = self.index().containers.get(id).cloned() else {
            return Ok(());
        };
        let me = self.clone();
        blocking(move || me.discard_container(&record)).await
    }

    /// Removes everything of the container `record` describes: its processes and
    /// libcontainer state (through the supervisor, or directly when it is gone), its
    /// rootfs, cgroup and files, and its record.
    pub fn discard_container(&self, record: &ContainerRecord) -> Result<()> {
        let k = key(&record.id);
        let mut errors = Vec::new();
        let delete = request::Kind::Delete(Delete { id: k.clone() });
        match self.supervisor(&record.pod).call(delete, CALL_TIMEOUT) {
            Ok(_) | Err(CallError::Refused(Code::NotFound, _)) => {}
            Err(CallError::Gone) => {
                if let Err(e) = self.bury_container(record) {
                    errors.push(e);
                }
                let state = self.layout.libcontainer().join(&k);
                if let Err(e) = fs::remove_dir_all(&state) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        errors.push(Error::io(format!("removing {}", state.display()), e));
                    }
                }
            }
            Err(e) => errors.push(e.into_error("container", &record.id.to_string())),
        }
        if let Err(e) = self.host.remove_rootfs(&self.layout.rootfs(&k)) {
            errors.push(e);
        }
        if !record.cgroup.is_empty() {
            if let Err(e) = self.host.remove_cgroup(&record.cgroup) {
                errors.push(e);
            }
        }
        Error::combine(format!("removing container {}", record.id), errors)?;
        let dir = self.layout.container(&k);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io(format!("removing {}", dir.display()), e))
            }
            _ => {}
        }
        self.index().containers.remove(&record.id);
        Ok(())
    }

    /// A container whose supervisor is gone: kills what is left of it (through its
    /// cgroup) and records its exit as lost unless an exit was recorded. Idempotent.
    pub fn bury_container(&self, record: &ContainerRecord) -> Result<()> {
        if !record.cgroup.is_empty()
            && !self
                .host
                .kill_cgroup(&record.cgroup, Duration::from_secs(5))
        {
            return Err(Error::backend(
                NAME,
                format!(
                    "container {}: processes of cgroup {} survive SIGKILL",
                    record.id, record.cgroup
                ),
            ));
        }
        let path = self.layout.exit_record(&key(&record.id));
        if records::load::<ExitRecord>(&path)?.is_none()
            && self.layout.container(&key(&record.id)).is_dir()
        {
            records::save(&path, &ExitRecord::lost(record.started_at))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::fake::Fixture;
    use super::super::super::layout::key;
    use super::super::super::records::{self, ExitRecord};

    #[tokio::test]
    async fn a_failed_unmount_keeps_the_container_for_a_retry() {
        let f = Fixture::new();
        let pod = f.pod("web");
        let app = f.container(&pod, "app");
        let k = key(&app);
        let rootfs = f.backend.layout.rootfs(&k);
        f.host.failing_unmounts.lock().unwrap().push(rootfs.clone());

        let err = f
            .backend
            .remove_container(&app)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("unmounting"), "{err}");
        assert!(f.backend.container(&app).is_ok());
        assert!(f.backend.layout.container_record(&k).is_file());
        // Its supervisor is gone: the exit is recorded as lost before anything goes.
        let exit = records::load::<ExitRecord>(&f.backend.layout.exit_record(&k)).unwrap();
        assert!(exit.is_some_and(|e| e.lost));

        f.backend.remove_container(&app).await.unwrap();
        assert!(f.backend.container(&app).is_err());
        assert!(!f.backend.layout.container(&k).exists());
        assert!(f.backend.pod(&pod).is_ok(), "the pod stays");
    }
}
