//! RemoveContainer, and the cleanup shared with a failed CreateContainer, a removed
//! pod and recovery. Every step is idempotent and runs even when one failed.

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::supervisor::{error::Code, request, Delete};
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::id::ContainerId;

use super::super::backend::{blocking, Backend};
use super::super::client::{CallError, CALL_TIMEOUT};
use super::super::layout::key;
use super::super::records::{self, ContainerPhase, ContainerRecord, ExitRecord};
use super::super::NAME;

impl Backend {
    /// Removes the container `id` (killing it if it runs); a missing one is removed
    /// already. Answers once it is dead, deleted in its supervisor and its record
    /// marked `Removing`; the rootfs unmount (an overlay unmount syncs the upper file
    /// system), the cgroup and the files go in the background, holding the
    /// container's lock. A failed one is finished by RemovePodSandbox, a create of the
    /// same id or the next start.
    pub async fn remove_container(self: &Arc<Self>, id: &ContainerId) -> Result<()> {
        let guard = self.lock(&key(id)).await;
        let Some(record) = self.index().containers.get(id).cloned() else {
            return Ok(());
        };
        let me = self.clone();
        let record = blocking(move || me.end_container(&record)).await?;
        let me = self.clone();
        tokio::spawn(async move {
            let _guard = guard;
            let id = record.id.clone();
            if let Err(e) = blocking(move || me.release_container(&record)).await {
                tracing::warn!(container = %id, error = %e, "removing container: teardown failed; its pod's removal, a create of the same id or the next start retries");
            }
        }.in_current_span());
        Ok(())
    }

    /// Finishes the teardown of a removed container of `removing` (one whose
    /// background teardown failed). The caller holds the container's lock.
    pub fn finish_removal(&self, id: &ContainerId) -> Result<()> {
        let Some(record) = self.index().removing.get(id).cloned() else {
            return Ok(());
        };
        self.discard_container(&record)
    }

    /// Removes everything of the container `record` describes: its processes and
    /// libcontainer state (through the supervisor, or directly when it is gone), its
    /// rootfs, cgroup and files, and its record.
    pub fn discard_container(&self, record: &ContainerRecord) -> Result<()> {
        self.kill_and_delete(record)?;
        self.release_container(record)
    }

    /// Kills and deletes the container in its supervisor, then marks its record
    /// `Removing` (on disk, then moved out of sight in the index). Returns the marked
    /// record.
    fn end_container(&self, record: &ContainerRecord) -> Result<ContainerRecord> {
        self.kill_and_delete(record)?;
        let mut marked = record.clone();
        marked.phase = ContainerPhase::Removing;
        records::save(&self.layout.container_record(&key(&record.id)), &marked)?;
        let mut index = self.index();
        index.containers.remove(&record.id);
        index.removing.insert(record.id.clone(), marked.clone());
        drop(index);
        self.changes.bump();
        Ok(marked)
    }

    /// The container's processes and libcontainer state: deleted through the
    /// supervisor, or directly when it is gone.
    fn kill_and_delete(&self, record: &ContainerRecord) -> Result<()> {
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
        Error::combine(format!("removing container {}", record.id), errors)
    }

    /// The rest, once the container is dead: its rootfs, cgroup, files and record.
    fn release_container(&self, record: &ContainerRecord) -> Result<()> {
        let k = key(&record.id);
        let mut errors = Vec::new();
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
        let mut index = self.index();
        index.containers.remove(&record.id);
        index.removing.remove(&record.id);
        drop(index);
        self.changes.bump();
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
    use super::super::super::recover::reconcile;

    #[tokio::test]
    async fn a_failed_unmount_leaves_the_removal_to_the_pods() {
        let f = Fixture::new();
        let pod = f.pod("web");
        let app = f.container(&pod, "app");
        let k = key(&app);
        let rootfs = f.backend.layout.rootfs(&k);
        f.host.failing_unmounts.lock().unwrap().push(rootfs.clone());

        f.backend.remove_container(&app).await.unwrap();
        assert!(f.backend.container(&app).unwrap_err().is_not_found());
        // The background teardown holds the lock until it is done (here: failed).
        drop(f.backend.lock(&k).await);
        assert!(f.backend.container(&app).unwrap_err().is_not_found());
        assert!(f.backend.layout.container_record(&k).is_file());
        assert!(f.backend.index().removing.contains_key(&app));
        // Its supervisor is gone: the exit is recorded as lost before anything goes.
        let exit = records::load::<ExitRecord>(&f.backend.layout.exit_record(&k)).unwrap();
        assert!(exit.is_some_and(|e| e.lost));
        f.backend.remove_container(&app).await.unwrap();
        assert!(f.backend.pod(&pod).is_ok(), "the pod stays");

        f.backend.remove_pod(&pod).await.unwrap();
        assert!(!f.backend.layout.container(&k).exists());
        assert!(f.backend.index().removing.is_empty());
    }

    #[tokio::test]
    async fn a_removal_cut_short_is_finished_at_the_next_start() {
        let mut f = Fixture::new();
        let pod = f.pod("web");
        let app = f.container(&pod, "app");
        let k = key(&app);
        f.host
            .failing_unmounts
            .lock()
            .unwrap()
            .push(f.backend.layout.rootfs(&k));
        f.backend.remove_container(&app).await.unwrap();
        drop(f.backend.lock(&k).await);
        f.restart();

        assert!(f.backend.container(&app).unwrap_err().is_not_found());
        assert!(reconcile(&f.backend).await.is_empty());
        assert!(!f.backend.layout.container(&k).exists());
        assert!(f.backend.index().removing.is_empty());
    }
}
