//! CreateContainer: record the container (intent), mount its rootfs, resolve its user,
//! finish and write its spec, and have the pod's supervisor create it. A failure
//! undoes all of it.

use std::sync::Arc;
use std::time::SystemTime;

use std::path::{Path, PathBuf};

use berth_proto::supervisor::{container_state::Status, reply, request, Create, State};
use tracing::Instrument;

use crate::error::{Error, IoContext, Result};
use crate::id::ContainerId;
use crate::types::{ContainerSpec, NamespaceMode};

use super::super::backend::{blocking, warn_cleanup, Backend};
use super::super::cgroups::Hierarchy;
use super::super::client::{unexpected, Client, CALL_TIMEOUT};
use super::super::finish::finish;
use super::super::layout::key;
use super::super::records::{ContainerPhase, ContainerRecord, PodPhase};
use super::super::{binds, cgroupfs, pod, rootfs, user, NAME};
use super::stop_signal;

impl Backend {
    /// Creates the container `id` in the pod `sandbox`. Runs to completion even when
    /// the caller gives up, so a container is either made or undone.
    pub async fn create_container(
        self: &Arc<Self>,
        sandbox: &ContainerId,
        id: &ContainerId,
        spec: &ContainerSpec,
    ) -> Result<()> {
        let signal = stop_signal(spec.stop_signal.as_deref())
            .map_err(|m| Error::InvalidSpec(format!("CreateContainer {id}: {m}")))?;
        let (me, sandbox, id, spec) = (self.clone(), sandbox.clone(), id.clone(), spec.clone());
        let work = async move {
            let _pod = me.lock(&key(&sandbox)).await;
            let _ctr = me.lock(&key(&id)).await;
            let me2 = me.clone();
            blocking(move || me2.create_locked(&sandbox, &id, &spec, signal)).await
        };
        // In the caller's span: the supervisor's Create is part of the call's trace.
        tokio::spawn(work.instrument(tracing::Span::current()))
            .await
            .map_err(|e| Error::internal(NAME, "CreateContainer task failed", e))?
    }

    fn create_locked(
        &self,
        sandbox: &ContainerId,
        id: &ContainerId,
        spec: &ContainerSpec,
        stop_signal: i32,
    ) -> Result<()> {
        let pod = self.pod(sandbox)?;
        if pod.phase != PodPhase::Ready {
            return Err(Error::FailedPrecondition(format!(
                "CreateContainer {id}: pod sandbox {sandbox} is not ready"
            )));
        }
        // A removed container of that id whose teardown failed is finished first.
        self.finish_removal(id)?;
        if self.index().containers.contains_key(id) {
            return Err(Error::AlreadyExists {
                kind: "container",
                id: id.to_string(),
            });
        }
        let k = key(id);
        let mut record = ContainerRecord {
            id: id.clone(),
            pod: sandbox.clone(),
            phase: ContainerPhase::Creating,
            created_at: SystemTime::now(),
            started_at: None,
            log_path: spec.log_path.clone(),
            cgroup: String::new(),
            user: None,
            cwd: String::new(),
            stop_signal,
            own_pid_namespace: false,
        };
        let dir = self.layout.container(&k);
        std::fs::create_dir_all(&dir).io_context(|| format!("creating {}", dir.display()))?;
        // Before anything can run in it: its exit record moves the listings' generation.
        self.changes.watch(&dir);
        self.save_container(&record)?;
        match self.make(&k, &mut record, &pod, spec) {
            Ok(()) => Ok(()),
            Err(e) => {
                let cleanup = self
                    .discard_container(&record)
                    .err()
                    .into_iter()
                    .collect::<Vec<_>>();
                warn_cleanup(&id.to_string(), &cleanup);
                Err(e)
            }
        }
    }

    /// The steps of making the container; `record` says how far it got.
    fn make(
        &self,
        k: &str,
        record: &mut ContainerRecord,
        pod_record: &super::super::records::PodRecord,
        spec: &ContainerSpec,
    ) -> Result<()> {
        let id = record.id.clone();
        let Prepared {
            mut oci,
            user: resolved,
            finished,
            ..
        } = self.prepare(k, &id, pod_record, spec)?;
        if let Hierarchy::V1 { mounts } = &self.hierarchy {
            cgroupfs::replace(&mut oci, mounts, &finished.cgroup, &self.layout.cgroupfs(k))?;
        }
        let bundle = self.layout.bundle(k);
        std::fs::create_dir_all(&bundle).io_context(|| format!("creating {}", bundle.display()))?;
        oci.save(bundle.join("config.json"))
            .map_err(|e| Error::internal(NAME, format!("writing the spec of {id}"), e))?;
        record.user = Some(resolved);
        record.cgroup = finished.cgroup;
        record.cwd = finished.cwd;
        record.own_pid_namespace = finished.own_pid_namespace;
        self.save_container(record)?;
        self.have_created(&self.supervisor(&record.pod), record, spec)?;
        record.phase = ContainerPhase::Created;
        self.save_container(record)
    }

    /// Has the pod's supervisor create the container `record` describes from its
    /// bundle (written by now).
    fn have_created(
        &self,
        supervisor: &Client,
        record: &ContainerRecord,
        spec: &ContainerSpec,
    ) -> Result<()> {
        let k = key(&record.id);
        let create = Create {
            bundle: self.layout.bundle(&k).display().to_string(),
            log_path: spec
                .log_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            state_dir: self.layout.container(&k).display().to_string(),
            cgroup_path: record.cgroup.clone(),
            own_pid_namespace: record.own_pid_namespace,
            stdin: spec.stdin,
            stdin_once: spec.stdin_once,
            tty: spec.tty,
            id: k,
        };
        let id = record.id.to_string();
        match supervisor.call(request::Kind::Create(create), CALL_TIMEOUT) {
            Ok(reply::Kind::Created(_)) => Ok(()),
            Ok(other) => Err(unexpected(other).into_error("container", &id)),
            Err(e) => Err(e.into_error("container", &id)),
        }
    }
}

/// A container made ready to run: its rootfs mounted (and remapped for a pod user
/// namespace), its user resolved, its OCI spec finished. What runs it — the pod's
/// supervisor, or containerd — is up to the caller.
pub struct Prepared {
    /// The finished OCI spec (`root.path` is `rootfs`).
    pub oci: oci_spec::runtime::Spec,
    /// The mounted overlay.
    pub rootfs: PathBuf,
    /// Who the process runs as.
    pub user: crate::types::ResolvedUser,
    /// The cgroup, PID-namespace and working-directory decisions.
    pub finished: super::super::finish::Finished,
}

impl Backend {
    /// Mounts the rootfs of the container `id` (key `k`) of the pod `pod_record` and
    /// finishes its spec. On failure the caller undoes what exists (the overlay at
    /// `layout.rootfs(k)`).
    pub fn prepare(
        &self,
        k: &str,
        id: &ContainerId,
        pod_record: &super::super::records::PodRecord,
        spec: &ContainerSpec,
    ) -> Result<Prepared> {
        let image = if spec.image_id.is_empty() {
            &spec.image
        } else {
            &spec.image_id
        };
        let layers = self.images.layer_dirs(image)?;
        let rootfs = self.host.mount_rootfs(&layers, &self.layout.rootfs(k))?;
        if let Some(user) = &pod_record.namespaces.user {
            self.host.remap_owners(&rootfs, &user.uids, &user.gids)?;
        }
        let resolved = user::resolve(&rootfs, &spec.user)
            .map_err(|e| Error::InvalidSpec(format!("CreateContainer {id}: {e}")))?;
        let pong = self
            .supervisor(&pod_record.id)
            .ping()
            .map_err(|e| e.into_error("pod sandbox", &pod_record.id.to_string()))?;
        let min_oom = own_oom_score_adj(pong.pid);
        let pid_namespace = match spec.namespaces.pid {
            // The namespace the holder's children go to: its own where it is PID 1,
            // the one it made where it sits in the pod's user namespace.
            NamespaceMode::Pod if pong.pid_ns_holder != 0 => Some(PathBuf::from(format!(
                "/proc/{}/ns/pid_for_children",
                pong.pid_ns_holder
            ))),
            NamespaceMode::Pod => {
                return Err(Error::FailedPrecondition(format!(
                    "CreateContainer {id}: pod sandbox {} has no PID namespace to share",
                    pod_record.id
                )))
            }
            NamespaceMode::Target => Some(self.target_pid_namespace(id, spec)?),
            NamespaceMode::Container | NamespaceMode::Node => None,
        };
        let mut oci = spec.oci.clone();
        if let Some(mounts) = oci.mounts_mut() {
            binds::resolve(mounts)?;
        }
        self.mount_image_volumes(k, spec, &mut oci)?;
        let parts = pod::parts(&self.layout, pod_record, pid_namespace);
        let finished = finish(&mut oci, k, &rootfs, &resolved, min_oom, &parts)?;
        if !finished.cwd.is_empty() {
            rootfs::make_dir_in_root(&rootfs, Path::new(&finished.cwd))?;
        }
        Ok(Prepared {
            oci,
            rootfs,
            user: resolved,
            finished,
        })
    }
}

impl Backend {
    /// Mounts `spec`'s image volumes under the rootfs directory and binds each into
    /// the container read-only (after the request's mounts, as kubelet orders
    /// volumes). Undone with the rootfs.
    fn mount_image_volumes(
        &self,
        k: &str,
        spec: &ContainerSpec,
        oci: &mut oci_spec::runtime::Spec,
    ) -> Result<()> {
        for (n, volume) in spec.image_volumes.iter().enumerate() {
            let layers = self.images.layer_dirs(&volume.image_id)?;
            let source = self.host.mount_image_volume(
                &layers,
                &self.layout.rootfs(k),
                n,
                &volume.sub_path,
            )?;
            let mount = oci_spec::runtime::MountBuilder::default()
                .destination(&volume.destination)
                .typ("bind")
                .source(source)
                .options(
                    ["rbind", "ro", "nosuid", "nodev"]
                        .map(String::from)
                        .to_vec(),
                )
                .build()
                .map_err(|e| Error::InvalidSpec(format!("image volume mount: {e}")))?;
            oci.mounts_mut().get_or_insert_with(Vec::new).push(mount);
        }
        Ok(())
    }
}

impl Backend {
    /// The PID namespace of the running container a `Target` PID mode names.
    fn target_pid_namespace(&self, id: &ContainerId, spec: &ContainerSpec) -> Result<PathBuf> {
        let target = spec.namespaces.target_id.as_deref().unwrap_or_default();
        let target_id = ContainerId::parse_display(target).ok_or_else(|| {
            Error::InvalidSpec(format!(
                "CreateContainer {id}: PID namespace target {target:?} is not a container id"
            ))
        })?;
        let target = self.container(&target_id)?;
        let state = request::Kind::State(State {
            id: key(&target_id),
        });
        match self.supervisor(&target.pod).call(state, CALL_TIMEOUT) {
            Ok(reply::Kind::State(s)) if s.status == Status::Running as i32 && s.pid != 0 => {
                Ok(PathBuf::from(format!("/proc/{}/ns/pid", s.pid)))
            }
            Ok(_) => Err(Error::FailedPrecondition(format!(
                "CreateContainer {id}: the PID namespace target {target_id} is not running"
            ))),
            Err(e) => Err(e.into_error("container", &target_id.to_string())),
        }
    }
}

/// The supervisor's `oom_score_adj` (its containers may not go below it); the agent's
/// own when it cannot be read.
fn own_oom_score_adj(pid: u32) -> i32 {
    [
        format!("/proc/{pid}/oom_score_adj"),
        "/proc/self/oom_score_adj".into(),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok()?.trim().parse().ok())
    .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use berth_proto::supervisor::container_state::Status;

    use super::super::super::fake::Fixture;
    use super::super::super::layout::key;
    use crate::error::Error;
    use crate::id::ContainerId;
    use crate::types::{ContainerSpec, SandboxState, UserRequest};

    fn spec(f: &Fixture) -> ContainerSpec {
        ContainerSpec {
            image: f.image(),
            oci: oci_spec::runtime::Spec::default(),
            ..Default::default()
        }
    }

    /// True when nothing of the container `id` is left: no record (in memory or on
    /// disk), no mount, no file.
    fn nothing_left_of(f: &Fixture, id: &ContainerId) -> bool {
        let k = key(id);
        f.backend.container(id).is_err()
            && f.host.mounted.lock().unwrap().is_empty()
            && f.files().iter().all(|p| !p.contains(&k))
    }

    #[tokio::test]
    async fn a_supervisor_dying_mid_create_undoes_the_container() {
        let f = Fixture::new();
        let pod = f.live_pod("web");
        let app = pod.with_role("app").unwrap();
        f.supervisors.die_on(&key(&pod), "Create");

        let err = f
            .backend
            .create_container(&pod, &app, &spec(&f))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");
        assert!(
            err.to_string().contains("supervisor is not running"),
            "{err}"
        );
        // The rootfs was mounted, then unmounted; what ran in the container's cgroup
        // was killed and the cgroup removed.
        let rootfs = f.backend.layout.rootfs(&key(&app));
        assert_eq!(
            f.host.calls_to("remove_rootfs"),
            [format!("remove_rootfs {}", rootfs.display())]
        );
        let cgroup = format!("/berth/{}/{}", key(&pod), key(&app));
        assert_eq!(
            f.host.calls_to("kill_cgroup"),
            [format!("kill_cgroup {cgroup}")]
        );
        assert_eq!(*f.host.removed_cgroups.lock().unwrap(), [cgroup]);
        assert!(nothing_left_of(&f, &app), "{:?}", f.files());
        // The pod is not ready for good: a retry is refused the same way.
        let status = f.backend.pod_status(&pod).await.unwrap();
        assert_eq!(status.state, SandboxState::NotReady);
        let again = f.backend.create_container(&pod, &app, &spec(&f)).await;
        assert!(matches!(again, Err(Error::FailedPrecondition(_))));
        assert!(nothing_left_of(&f, &app));
    }

    #[tokio::test]
    async fn a_step_failing_after_the_rootfs_mount_undoes_the_container() {
        let f = Fixture::new();
        let pod = f.live_pod("web");
        let app = pod.with_role("app").unwrap();
        let mut bad = spec(&f);
        bad.user = UserRequest {
            username: Some("nobody-here".into()),
            ..Default::default()
        };

        let err = f
            .backend
            .create_container(&pod, &app, &bad)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidSpec(_)), "{err:?}");
        assert_eq!(f.host.calls_to("mount_rootfs").len(), 1);
        assert_eq!(f.host.calls_to("remove_rootfs").len(), 1);
        assert!(nothing_left_of(&f, &app), "{:?}", f.files());
        // The supervisor never got the container; it was told to delete it anyway.
        assert_eq!(f.supervisors.calls_to(&key(&pod)), ["Delete"]);
        assert!(f.supervisors.held(&key(&pod)).is_empty());

        // Nothing stands in the way of a good create.
        f.backend
            .create_container(&pod, &app, &spec(&f))
            .await
            .unwrap();
        let held = f.supervisors.held(&key(&pod));
        assert_eq!(held[&key(&app)].status, Status::Created);
        assert_eq!(f.host.mounted.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_refused_create_undoes_the_container_with_the_supervisors_code() {
        let f = Fixture::new();
        let pod = f.live_pod("web");
        let app = pod.with_role("app").unwrap();
        // The supervisor holds a container of that name already (a record lost).
        f.supervisors.hold(
            &key(&pod),
            &key(&app),
            super::super::super::fake::FakeContainer {
                status: Status::Running,
                pid: 7,
                exit_code: 0,
            },
        );

        let err = f
            .backend
            .create_container(&pod, &app, &spec(&f))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
        assert!(nothing_left_of(&f, &app), "{:?}", f.files());
        assert_eq!(
            f.supervisors.calls_to(&key(&pod)),
            ["Ping", "Create", "Delete"]
        );
    }
}
