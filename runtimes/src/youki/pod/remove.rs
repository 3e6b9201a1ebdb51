//! RemovePodSandbox, and the teardown shared with a failed RunPodSandbox and with
//! recovery: every step is idempotent and runs even when an earlier one failed.

use std::fs;
use std::sync::Arc;

use berth_proto::supervisor::request;

use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::network::NsKind;

use super::super::backend::{blocking, Backend};
use super::super::client::{CallError, CALL_TIMEOUT};
use super::super::layout::key;
use super::super::records::PodRecord;
use super::pod_network;

impl Backend {
    /// Removes the pod `id` and everything it holds; a missing pod is removed already.
    pub async fn remove_pod(self: &Arc<Self>, id: &ContainerId) -> Result<()> {
        let _guard = self.lock(&key(id)).await;
        let Some(record) = self.index().pods.get(id).cloned() else {
            return Ok(());
        };
        let errors = teardown(self, &record).await;
        if errors.is_empty() {
            self.index().pods.remove(id);
            self.changes.bump();
            return Ok(());
        }
        Error::combine(format!("removing pod sandbox {id}"), errors)
    }

    /// Ends the supervisor of the pod keyed `k`: `Shutdown` (which kills and deletes
    /// its containers), or SIGKILL through its pid file when it does not answer.
    pub fn end_supervisor(&self, k: &str) -> Result<()> {
        let answer = self
            .supervisor_of(k)
            .call(request::Kind::Shutdown(Default::default()), CALL_TIMEOUT);
        let dir = self.layout.pod_run(k);
        match answer {
            Ok(_) | Err(CallError::Gone) => {}
            Err(e) => {
                tracing::warn!(pod = k, error = ?e, "the supervisor did not shut down; killing it");
            }
        }
        // Whatever it answered, make sure no process of it is left.
        if let Some(pid) = supervisor_pid(&dir) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        Ok(())
    }

    /// The pod's runtime directory: its `/dev/shm` unmounted first (removing files
    /// across a mount point would empty the mount and then fail).
    pub fn remove_pod_run(&self, k: &str) -> Vec<Error> {
        let mut errors = Vec::new();
        if let Err(e) = self.host.unmount_shm(&self.layout.pod_shm(k)) {
            errors.push(e);
        }
        let run = self.layout.pod_run(k);
        if let Err(e) = fs::remove_dir_all(&run) {
            if e.kind() != std::io::ErrorKind::NotFound {
                errors.push(Error::io(format!("removing {}", run.display()), e));
            }
        }
        errors
    }
}

/// The pid in `<dir>/shim.pid` when that process is still the supervisor of `dir`
/// (its command line names the directory: a recycled pid is left alone).
pub fn supervisor_pid(dir: &std::path::Path) -> Option<nix::unistd::Pid> {
    let pid: i32 = fs::read_to_string(dir.join("shim.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let needle = dir.as_os_str().as_encoded_bytes();
    let ours = cmdline.split(|b| *b == 0).any(|arg| arg == needle);
    let state = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // A zombie (`Z`) is dead already; its parent has not reaped it yet.
    let zombie = state
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
    (ours && !zombie).then(|| nix::unistd::Pid::from_raw(pid))
}

/// Undoes everything of the pod `record` describes: supervisor, containers, network,
/// pins, `/dev/shm`, cgroup, files. Returns what failed (the record stays on disk then,
/// so the next attempt or the next start retries).
pub async fn teardown(backend: &Arc<Backend>, record: &PodRecord) -> Vec<Error> {
    let mut errors = Vec::new();
    let k = key(&record.id);
    let (me, pod) = (backend.clone(), k.clone());
    if let Err(e) = blocking(move || me.end_supervisor(&pod)).await {
        errors.push(e);
    }
    let containers = backend.index().containers_of(&record.id);
    for c in containers {
        let me = backend.clone();
        if let Err(e) = blocking(move || me.discard_container(&c)).await {
            errors.push(e);
        }
    }
    // Removed containers (those too whose removal ran meanwhile): their background
    // teardown is awaited (through their lock), a failed one retried.
    let removing = backend.index().removing_of(&record.id);
    for c in removing {
        let _ctr = backend.lock(&key(&c.id)).await;
        let me = backend.clone();
        if let Err(e) = blocking(move || me.finish_removal(&c.id)).await {
            errors.push(e);
        }
    }
    if record.netns.is_some() {
        if let Err(e) = backend
            .host
            .detach(&k, record.netns.as_deref(), &pod_network(record))
            .await
        {
            errors.push(e);
        }
    }
    let (me, r, clean) = (backend.clone(), record.clone(), errors.is_empty());
    match blocking(move || Ok(me.release_pod(&r, clean))).await {
        Ok(more) => errors.extend(more),
        Err(e) => errors.push(e),
    }
    if errors.is_empty() {
        backend.supervisors.forget(&record.id);
    }
    errors
}

impl Backend {
    /// The blocking tail of a teardown: pins, `/dev/shm`, cgroup, then the files when
    /// the steps before (`clean`) and these all succeeded: the record is what a retry,
    /// now or at the next start, works from.
    fn release_pod(&self, record: &PodRecord, clean: bool) -> Vec<Error> {
        let k = key(&record.id);
        let mut errors = Vec::new();
        // The user namespace last: it owns the others.
        for (kind, pin) in [
            (NsKind::Net, &record.netns),
            (NsKind::Uts, &record.utsns),
            (NsKind::Ipc, &record.ipcns),
            (NsKind::User, &record.userns),
        ] {
            if pin.is_some() {
                if let Err(e) = self.host.unpin(kind, &k) {
                    errors.push(e);
                }
            }
        }
        errors.extend(self.remove_pod_run(&k));
        if record.owns_cgroup {
            if let Err(e) = self.host.remove_cgroup(&record.cgroup) {
                errors.push(e);
            }
        }
        if clean && errors.is_empty() {
            let dir = self.layout.pod(&k);
            if let Err(e) = fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    errors.push(Error::io(format!("removing {}", dir.display()), e));
                }
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::fake::Fixture;
    use super::super::super::layout::key;

    #[tokio::test]
    async fn a_failed_cni_del_keeps_the_pod_and_a_retry_finishes() {
        let mut f = Fixture::new();
        let pod = f.pod("web");
        let app = f.container(&pod, "app");
        *f.host.failing_detaches.lock().unwrap() = 1;

        let err = f.backend.remove_pod(&pod).await.unwrap_err().to_string();
        assert!(
            err.contains(&format!("removing pod sandbox {pod}")) && err.contains("CNI DEL"),
            "{err}"
        );
        let k = key(&pod);
        assert!(f.host.attached.lock().unwrap().contains(&k));
        // The steps after the failed one ran.
        assert!(f.backend.container(&app).is_err());
        assert_eq!(f.host.calls_to("unpin").len(), 3);
        assert!(f
            .host
            .removed_cgroups
            .lock()
            .unwrap()
            .contains(&format!("/berth/{k}")));
        // What a retry needs stays, in memory and on disk (for the next start).
        assert!(f.backend.pod(&pod).is_ok());
        assert!(f.backend.layout.pod_record(&k).is_file());
        f.restart();
        assert!(f.backend.pod(&pod).is_ok());

        f.backend.remove_pod(&pod).await.unwrap();
        assert!(f.backend.pod(&pod).is_err());
        assert!(f.host.attached.lock().unwrap().is_empty());
        assert_eq!(f.host.calls_to("detach").len(), 2);
        assert_eq!(f.files(), Vec::<String>::new());
        // Removing a removed pod succeeds and asks nothing of the host.
        let calls = f.host.calls.lock().unwrap().len();
        f.backend.remove_pod(&pod).await.unwrap();
        assert_eq!(f.host.calls.lock().unwrap().len(), calls);
    }

    #[tokio::test]
    async fn an_unmount_failing_half_way_through_a_container_is_retried() {
        let mut f = Fixture::new();
        let pod = f.pod("web");
        let app = f.container(&pod, "app");
        let sidecar = f.container(&pod, "sidecar");
        let rootfs = f.backend.layout.rootfs(&key(&sidecar));
        f.host.failing_unmounts.lock().unwrap().push(rootfs.clone());

        let err = f.backend.remove_pod(&pod).await.unwrap_err().to_string();
        assert!(
            err.contains(&format!("removing container {sidecar}")) && err.contains("unmounting"),
            "{err}"
        );
        // The other container went; this one's steps after the unmount ran, and its
        // record and the pod's stay for the retry.
        assert!(f.backend.container(&app).is_err());
        let sidecar_cgroup = format!("/berth/{}/{}", key(&pod), key(&sidecar));
        assert!(f
            .host
            .removed_cgroups
            .lock()
            .unwrap()
            .contains(&sidecar_cgroup));
        assert!(f.backend.container(&sidecar).is_ok());
        assert!(f.backend.layout.container_record(&key(&sidecar)).is_file());
        assert!(rootfs.is_dir());
        assert!(f.backend.layout.pod_record(&key(&pod)).is_file());
        f.restart();
        assert!(f.backend.container(&sidecar).is_ok());

        f.backend.remove_pod(&pod).await.unwrap();
        assert!(f.backend.pod(&pod).is_err() && f.backend.container(&sidecar).is_err());
        assert!(f.host.attached.lock().unwrap().is_empty());
        assert_eq!(f.files(), Vec::<String>::new());
    }
}
