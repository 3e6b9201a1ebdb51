//! What `YoukiRuntime::open` does before serving: load every record, undo what a crash
//! left half-made, reconnect to the supervisors that live on, and bury the containers
//! of supervisors that died (kill what is left through the cgroup, record the exit as
//! lost, unmount the rootfs, remove the cgroup). Every step is idempotent, so whatever
//! fails is retried at the next start.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};

use super::backend::{blocking, Backend, Index};
use super::layout::{key, Layout};
use super::records::{self, ContainerPhase, ContainerRecord, PodPhase, PodRecord};
use super::{pod, rootfs};
use crate::metrics::{self, SupervisorEvent};
use crate::supervisor;

/// Names of the directories in `dir` (none when it does not exist).
fn entries(dir: &Path) -> Result<Vec<String>> {
    match fs::read_dir(dir) {
        Ok(rd) => Ok(rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(format!("listing {}", dir.display()), e)),
    }
}

/// Loads every record. A directory without a record was made just before its record
/// would have been written: nothing else exists for it, so it is removed — unless it
/// holds another backend's record (the containerd backend keeps its containers in
/// this layout, through `Sandboxes`): that one is left to its owner.
pub fn load_index(layout: &Layout) -> Result<Index> {
    let mut index = Index::default();
    for k in entries(&layout.pods())? {
        match records::load::<PodRecord>(&layout.pod_record(&k))? {
            Some(r) => {
                index.pods.insert(r.id.clone(), r);
            }
            None => remove_dir(&layout.pod(&k))?,
        }
    }
    for k in entries(&layout.containers())? {
        match records::load::<ContainerRecord>(&layout.container_record(&k))? {
            Some(r) if r.phase == ContainerPhase::Removing => {
                index.removing.insert(r.id.clone(), r);
            }
            Some(r) => {
                index.containers.insert(r.id.clone(), r);
            }
            None if foreign(&layout.container(&k)) => {}
            None => {
                rootfs::remove(&layout.rootfs(&k))?;
                remove_dir(&layout.container(&k))?;
            }
        }
    }
    Ok(index)
}

/// Whether the container directory `dir` holds a record that is not youki's (a
/// `.json` file other than `container.json`).
fn foreign(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(|e| e.ok()).any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.ends_with(".json") && name != "container.json"
        })
    })
}

fn remove_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("removing {}", dir.display()), e))
        }
        _ => Ok(()),
    }
}

/// Reconciles the loaded records with what runs; returns what could not be done now.
pub async fn reconcile(backend: &Arc<Backend>) -> Vec<Error> {
    let mut errors = Vec::new();
    let (pods, containers, removing): (Vec<PodRecord>, Vec<ContainerRecord>, Vec<_>) = {
        let index = backend.index();
        (
            index.pods.values().cloned().collect(),
            index.containers.values().cloned().collect(),
            index.removing.values().cloned().collect(),
        )
    };
    // Removed containers whose teardown a crash (or a failure) cut short.
    for c in removing {
        let me = backend.clone();
        if let Err(e) = blocking(move || me.discard_container(&c)).await {
            errors.push(e);
        }
    }
    // Containers first: an orphan, or one whose creation was cut short, goes.
    for c in containers {
        let orphan = !pods.iter().any(|p| p.id == c.pod);
        if orphan || c.phase == ContainerPhase::Creating {
            let me = backend.clone();
            if let Err(e) = blocking(move || me.discard_container(&c)).await {
                errors.push(e);
            }
        }
    }
    for p in pods {
        if p.phase == PodPhase::Creating {
            let failed = pod::teardown(backend, &p).await;
            if failed.is_empty() {
                backend.index().pods.remove(&p.id);
            }
            errors.extend(failed);
            continue;
        }
        let me = backend.clone();
        if let Err(e) = blocking(move || me.reconnect(&p)).await {
            errors.push(e);
        }
    }
    let me = backend.clone();
    if let Err(e) = blocking(move || me.end_stray_supervisors()).await {
        errors.push(e);
    }
    errors
}

impl Backend {
    /// A pod whose supervisor answers is served again; otherwise its containers are
    /// buried.
    fn reconnect(&self, pod: &PodRecord) -> Result<()> {
        let k = key(&pod.id);
        match self.supervisor_of(&k).ping() {
            Ok(pong) if pong.version == supervisor::PROTOCOL_VERSION => {
                tracing::info!(pod = %pod.id, supervisor = pong.pid, containers = pong.containers.len(), "reconnected to the pod's supervisor");
                self.supervisors.watch(&pod.id, &self.layout.pod_run(&k));
                metrics::supervisor(SupervisorEvent::Reconnected);
                return Ok(());
            }
            Ok(pong) => {
                tracing::warn!(pod = %pod.id, version = pong.version, "the pod's supervisor speaks another protocol version; burying the pod")
            }
            Err(_) => {
                tracing::warn!(pod = %pod.id, "the pod's supervisor is gone; burying its containers")
            }
        }
        // The pod is not ready for good: kubelet replaces it (see `watch`).
        self.supervisors.exited(&pod.id);
        metrics::supervisor(SupervisorEvent::Lost);
        let mut failures = Vec::new();
        for c in self.index().containers_of(&pod.id) {
            let buried = self
                .bury_container(&c)
                .and_then(|()| self.host.remove_rootfs(&self.layout.rootfs(&key(&c.id))))
                .and_then(|()| remove_dir(&self.layout.libcontainer().join(key(&c.id))))
                .and_then(|()| {
                    if c.cgroup.is_empty() {
                        Ok(())
                    } else {
                        self.host.remove_cgroup(&c.cgroup)
                    }
                });
            if let Err(e) = buried {
                failures.push(e);
            }
        }
        Error::combine(
            format!("burying the containers of pod {}", pod.id),
            failures,
        )
    }

    /// Supervisors of pods that have no record (their pod's removal was cut short).
    fn end_stray_supervisors(&self) -> Result<()> {
        let known: Vec<String> = self.index().pods.keys().map(key).collect();
        for k in entries(&self.layout.pods_run())? {
            if !known.contains(&k) {
                self.end_supervisor(&k)?;
                if let Some(e) = self.remove_pod_run(&k).into_iter().next() {
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::Fixture;
    use super::super::layout::key;
    use super::super::records::PodPhase;
    use super::reconcile;
    use crate::types::{ContainerState, SandboxState};
    use berth_proto::supervisor::container_state::Status;

    #[test]
    fn a_directory_without_a_record_goes_unless_another_backend_owns_it() {
        let dir = tempfile::tempdir().unwrap();
        let layout =
            super::Layout::new(&dir.path().join("state"), &dir.path().join("run")).unwrap();
        let (cut_short, theirs) = (layout.container("cut-short"), layout.container("theirs"));
        std::fs::create_dir_all(&cut_short).unwrap();
        std::fs::create_dir_all(&theirs).unwrap();
        std::fs::write(theirs.join("containerd.json"), "{}").unwrap();
        let index = super::load_index(&layout).unwrap();
        assert!(index.containers.is_empty());
        assert!(!cut_short.exists(), "a directory cut short is removed");
        assert!(
            theirs.join("containerd.json").exists(),
            "another backend's record is kept"
        );
    }

    #[tokio::test]
    async fn a_pod_cut_short_after_cni_add_is_detached_and_removed() {
        let mut f = Fixture::new();
        let pod = f.pod("web");
        let mut record = f.backend.pod(&pod).unwrap();
        record.phase = PodPhase::Creating;
        f.backend.save_pod(&record).unwrap();
        let half = f.container(&pod, "app");
        // The crash: RunPodSandbox never finished and its supervisor is gone; the
        // next start's first detach fails too.
        *f.host.failing_detaches.lock().unwrap() = 1;
        f.restart();

        let left = reconcile(&f.backend).await;
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(left[0].to_string().contains("CNI DEL"), "{}", left[0]);
        assert!(f.backend.layout.pod_record(&key(&pod)).is_file());
        assert!(f.backend.container(&half).is_err(), "its container went");

        f.restart();
        assert!(reconcile(&f.backend).await.is_empty());
        assert_eq!(f.host.calls_to("detach").len(), 2);
        assert!(f.host.attached.lock().unwrap().is_empty());
        assert!(f.backend.pod_status(&pod).await.unwrap_err().is_not_found());
        assert_eq!(f.files(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_ready_pod_whose_supervisor_died_is_not_ready_until_removed() {
        let mut f = Fixture::new();
        let pod = f.pod("web");
        let app = f.container(&pod, "app");
        // The crash: the supervisor is gone, the network never detached.
        f.restart();

        assert!(reconcile(&f.backend).await.is_empty());
        let status = f.backend.pod_status(&pod).await.unwrap();
        assert_eq!(status.state, SandboxState::NotReady);
        assert_eq!(
            status.ips,
            ["10.85.0.2"],
            "still attached: stopping detaches"
        );
        assert!(f.host.calls_to("detach").is_empty());
        // The container is buried: its exit lost, its rootfs and cgroup gone.
        let c = f.backend.container_status(&app).await.unwrap();
        assert_eq!(c.state, ContainerState::Exited);
        assert_eq!((c.exit_code, c.reason.as_str()), (255, "Unknown"));
        assert!(!f.backend.layout.rootfs(&key(&app)).exists());
        let cgroup = format!("/berth/{}/{}", key(&pod), key(&app));
        assert!(f.host.removed_cgroups.lock().unwrap().contains(&cgroup));

        f.backend.stop_pod(&pod).await.unwrap();
        let status = f.backend.pod_status(&pod).await.unwrap();
        assert_eq!(status.state, SandboxState::NotReady);
        assert!(status.ips.is_empty() && status.netns_path.is_none());
        assert!(f.host.attached.lock().unwrap().is_empty());
        f.backend.remove_pod(&pod).await.unwrap();
        assert_eq!(f.host.calls_to("detach").len(), 1, "detached once");
        assert_eq!(f.files(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn recovery_reconnects_to_a_live_supervisor_and_reports_its_containers() {
        let mut f = Fixture::new();
        let pod = f.live_pod("web");
        let app = f.container(&pod, "app");
        let job = f.container(&pod, "job");
        let idle = f.container(&pod, "idle");
        f.backend.start_container(&app).await.unwrap();
        f.backend.start_container(&job).await.unwrap();
        let mut held = f.supervisors.held(&key(&pod))[&key(&job)];
        held.status = Status::Exited;
        held.exit_code = 3;
        f.supervisors.hold(&key(&pod), &key(&job), held);
        // The agent restarts; the supervisor lives on.
        f.restart();

        assert!(reconcile(&f.backend).await.is_empty());
        let status = f.backend.pod_status(&pod).await.unwrap();
        assert_eq!(status.state, SandboxState::Ready);
        let app = f.backend.container_status(&app).await.unwrap();
        assert_eq!(
            (app.state, app.pid.is_some()),
            (ContainerState::Running, true)
        );
        let job = f.backend.container_status(&job).await.unwrap();
        assert_eq!(job.state, ContainerState::Exited);
        assert_eq!((job.exit_code, job.reason.as_str()), (3, "Error"));
        let idle = f.backend.container_status(&idle).await.unwrap();
        assert_eq!(idle.state, ContainerState::Created);
        // Nothing was buried or unmounted.
        assert!(f.host.calls_to("kill_cgroup").is_empty());
        assert!(f.host.calls_to("remove_rootfs").is_empty());
        assert_eq!(f.supervisors.held(&key(&pod)).len(), 3);
    }

    #[tokio::test]
    async fn a_supervisor_dying_during_recovery_has_its_pod_buried_and_the_others_kept() {
        let mut f = Fixture::new();
        let (web, db) = (f.live_pod("web"), f.live_pod("db"));
        let (app, store) = (f.container(&web, "app"), f.container(&db, "store"));
        f.backend.start_container(&app).await.unwrap();
        f.backend.start_container(&store).await.unwrap();
        // The agent restarts; db's supervisor dies while recovery asks it.
        f.supervisors.die_on(&key(&db), "Ping");
        f.restart();

        assert!(reconcile(&f.backend).await.is_empty());
        let db_status = f.backend.pod_status(&db).await.unwrap();
        assert_eq!(db_status.state, SandboxState::NotReady);
        let cgroup = format!("/berth/{}/{}", key(&db), key(&store));
        let store = f.backend.container_status(&store).await.unwrap();
        assert_eq!(
            (store.state, store.exit_code),
            (ContainerState::Exited, 255)
        );
        assert_eq!(
            f.host.calls_to("kill_cgroup"),
            [format!("kill_cgroup {cgroup}")]
        );
        // web's is untouched and still answers.
        let web_status = f.backend.pod_status(&web).await.unwrap();
        assert_eq!(web_status.state, SandboxState::Ready);
        let app_status = f.backend.container_status(&app).await.unwrap();
        assert_eq!(app_status.state, ContainerState::Running);
        assert!(f.backend.layout.rootfs(&key(&app)).is_dir());

        // web's dies later, mid-call: its container is buried when next asked.
        f.supervisors.die_on(&key(&web), "State");
        let app_status = f.backend.container_status(&app).await.unwrap();
        assert_eq!(
            (app_status.state, app_status.exit_code),
            (ContainerState::Exited, 255)
        );
        let web_status = f.backend.pod_status(&web).await.unwrap();
        assert_eq!(web_status.state, SandboxState::NotReady);
    }
}
