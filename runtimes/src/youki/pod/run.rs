//! RunPodSandbox: record the pod (intent), pin its namespaces, attach its network,
//! write its files, apply its sysctls, start its supervisor. A failure undoes all of
//! it; a crash half way is undone when the backend opens next.

use std::sync::Arc;
use std::time::SystemTime;

use tracing::Instrument;

use crate::error::{Error, IoContext, Result};
use crate::id::ContainerId;
use crate::metrics::SupervisorEvent;
use crate::network::NsKind;
use crate::types::{
    NamespaceMode, NamespaceOptions, SandboxSpec, SandboxState, SandboxStatus, UserNamespace,
};

use super::super::backend::{blocking, warn_cleanup, Backend};
use super::super::layout::key;
use super::super::records::{PodPhase, PodRecord};
use super::super::{remap, NAME};
use super::{files, pod_network, sysctl};
use crate::supervisor;

/// The longest hostname Kubernetes gives a pod (the kernel takes 64 bytes).
const MAX_HOSTNAME: usize = 63;

/// Refuses what the backend cannot set up, before anything is made.
fn validate(id: &ContainerId, spec: &SandboxSpec) -> Result<String> {
    let ns = &spec.namespaces;
    let bad = |what: &str| Err(Error::InvalidSpec(format!("RunPodSandbox {id}: {what}")));
    if matches!(ns.network, NamespaceMode::Container | NamespaceMode::Target) {
        return bad("the network namespace mode must be POD or NODE");
    }
    if matches!(ns.ipc, NamespaceMode::Container | NamespaceMode::Target) {
        return bad("the IPC namespace mode must be POD or NODE");
    }
    if ns.pid == NamespaceMode::Target {
        return bad("a pod's PID namespace cannot be another container's (TARGET)");
    }
    if let Some(Err(what)) = ns.user.as_ref().map(|user| validate_userns(user, ns)) {
        return bad(&what);
    }
    sysctl::validate(&spec.sysctls, ns)?;
    let hostname = if ns.network == NamespaceMode::Node {
        nix::unistd::gethostname()
            .map_err(|e| Error::io("reading the node's hostname", e.into()))?
            .to_string_lossy()
            .into_owned()
    } else if spec.hostname.is_empty() {
        spec.name.clone()
    } else {
        spec.hostname.clone()
    };
    if hostname.is_empty()
        || hostname
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return bad(&format!("hostname {hostname:?} is not valid"));
    }
    Ok(fit_hostname(&hostname))
}

/// A pod user namespace needs the pod's own network, IPC and PID namespaces (as
/// Kubernetes requires for `hostUsers: false`): a namespace of the node is owned by the
/// node's user namespace, and the pod's root could not mount `/sys`, `/dev/mqueue` or
/// `/proc` for it. Its mappings must be what the rootfs can be remapped with: one range
/// each, starting at container id 0.
fn validate_userns(user: &UserNamespace, ns: &NamespaceOptions) -> std::result::Result<(), String> {
    if user.mode != NamespaceMode::Pod {
        return Err(format!(
            "the user namespace mode must be POD or NODE, not {:?}",
            user.mode
        ));
    }
    if ns.network == NamespaceMode::Node
        || ns.ipc == NamespaceMode::Node
        || ns.pid == NamespaceMode::Node
    {
        return Err(
            "a pod with its own user namespace cannot share the node's network, IPC or PID namespace"
                .into(),
        );
    }
    for (what, maps) in [("uid", &user.uids), ("gid", &user.gids)] {
        match maps.as_slice() {
            [m] if m.container_id == 0 && m.length > 0 => {}
            _ => {
                return Err(format!(
                    "the user namespace needs exactly one {what} mapping starting at container id 0, got {maps:?}"
                ))
            }
        }
    }
    Ok(())
}

/// `name` cut to what the kernel takes as Kubernetes cuts pod hostnames: at most 63
/// bytes, without a trailing `-` or `.` (a pod name used as hostname can be longer).
fn fit_hostname(name: &str) -> String {
    if name.len() <= MAX_HOSTNAME {
        return name.to_string();
    }
    let mut end = MAX_HOSTNAME;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].trim_end_matches(['-', '.']).to_string()
}

impl Backend {
    /// Creates the pod `id`. Runs to completion even when the caller gives up (its
    /// future dropped at a gRPC deadline), so a pod is either made or undone.
    pub async fn run_pod(
        self: &Arc<Self>,
        id: &ContainerId,
        spec: &SandboxSpec,
    ) -> Result<SandboxStatus> {
        let hostname = validate(id, spec)?;
        let (me, id, spec) = (self.clone(), id.clone(), spec.clone());
        // In the caller's span: the pod's CNI and supervisor work is part of its trace.
        let work = async move { me.run_pod_to_end(&id, &spec, hostname).await };
        tokio::spawn(work.instrument(tracing::Span::current()))
            .await
            .map_err(|e| Error::internal(NAME, "RunPodSandbox task failed", e))?
    }

    async fn run_pod_to_end(
        self: &Arc<Self>,
        id: &ContainerId,
        spec: &SandboxSpec,
        hostname: String,
    ) -> Result<SandboxStatus> {
        let k = key(id);
        let _guard = self.lock(&k).await;
        if self.index().pods.contains_key(id) {
            return Err(Error::AlreadyExists {
                kind: "pod sandbox",
                id: id.to_string(),
            });
        }
        let (cgroup, owns_cgroup) = if spec.cgroup_parent.is_empty() {
            (
                format!("{}/{k}", self.cgroup_parent.trim_end_matches('/')),
                true,
            )
        } else {
            (spec.cgroup_parent.clone(), false)
        };
        let mut record = PodRecord {
            id: id.clone(),
            phase: PodPhase::Creating,
            created_at: SystemTime::now(),
            name: spec.name.clone(),
            namespace: spec.namespace.clone(),
            uid: spec.uid.clone(),
            hostname,
            namespaces: spec.namespaces.clone(),
            port_mappings: spec.port_mappings.clone(),
            netns: None,
            ipcns: None,
            utsns: None,
            userns: None,
            ips: Vec::new(),
            cgroup,
            owns_cgroup,
        };
        let dir = self.layout.pod(&k);
        std::fs::create_dir_all(&dir).io_context(|| format!("creating {}", dir.display()))?;
        self.save_pod(&record)?;
        match self.set_up(&k, &mut record, spec).await {
            Ok(()) => {
                // Its death is noticed from now on without asking it (a few reads
                // in /proc and one pidfd).
                self.supervisors.watch(id, &self.layout.pod_run(&k));
                record.phase = PodPhase::Ready;
                self.save_pod(&record)?;
                Ok(SandboxStatus {
                    state: SandboxState::Ready,
                    ips: record.ips.clone(),
                    netns_path: record.netns.clone(),
                })
            }
            Err(e) => {
                let cleanup = super::teardown(self, &record).await;
                warn_cleanup(&id.to_string(), &cleanup);
                if cleanup.is_empty() {
                    self.index().pods.remove(id);
                }
                Err(e)
            }
        }
    }

    /// Every step of a pod's making; `record` says what exists so far.
    async fn set_up(
        self: &Arc<Self>,
        k: &str,
        record: &mut PodRecord,
        spec: &SandboxSpec,
    ) -> Result<()> {
        let own_network = record.namespaces.network != NamespaceMode::Node;
        let own_ipc = record.namespaces.ipc != NamespaceMode::Node;
        // Intent first: the pin paths are recorded before the pins exist.
        if own_network {
            record.netns = Some(self.network.pin_path(NsKind::Net, k));
            record.utsns = Some(self.network.pin_path(NsKind::Uts, k));
        }
        if own_ipc {
            record.ipcns = Some(self.network.pin_path(NsKind::Ipc, k));
        }
        if record.namespaces.user.is_some() {
            record.userns = Some(self.network.pin_path(NsKind::User, k));
        }
        self.save_pod(record)?;

        let (me, r, key) = (self.clone(), record.clone(), k.to_string());
        blocking(move || me.pin_and_prepare(&key, &r)).await?;

        if let Some(netns) = record.netns.clone() {
            let attachment = self.host.attach(k, &netns, &pod_network(record)).await?;
            record.ips = attachment.ips;
            self.save_pod(record)?;
        }

        let (me, r, key, spec) = (self.clone(), record.clone(), k.to_string(), spec.clone());
        blocking(move || me.finish_pod(&key, &r, &spec)).await
    }

    /// Pins the namespaces (inside the pod's user namespace when it has one), sets the
    /// hostname, mounts `/dev/shm`.
    fn pin_and_prepare(&self, k: &str, record: &PodRecord) -> Result<()> {
        let pinned: Vec<NsKind> = [
            (NsKind::Net, &record.netns),
            (NsKind::Uts, &record.utsns),
            (NsKind::Ipc, &record.ipcns),
        ]
        .into_iter()
        .filter(|(_, pin)| pin.is_some())
        .map(|(kind, _)| kind)
        .collect();
        match &record.namespaces.user {
            Some(user) => {
                self.host
                    .pin_with_userns(k, &user.uids, &user.gids, &pinned)?;
            }
            None => {
                for kind in pinned {
                    self.host.pin(kind, k)?;
                }
            }
        }
        if let Some(uts) = &record.utsns {
            self.host.set_hostname(uts, &record.hostname)?;
        }
        if record.ipcns.is_some() {
            // Owned by the pod's root when it has a user namespace.
            let owner = record
                .namespaces
                .user
                .as_ref()
                .and_then(|u| Some((remap::to_host(0, &u.uids)?, remap::to_host(0, &u.gids)?)));
            self.host.mount_shm(&self.layout.pod_shm(k), owner)?;
        }
        Ok(())
    }

    /// Writes the pod's files, applies its sysctls and starts its supervisor.
    fn finish_pod(&self, k: &str, record: &PodRecord, spec: &SandboxSpec) -> Result<()> {
        let host_network = record.namespaces.network == NamespaceMode::Node;
        files::write_etc(
            &self.layout.pod_etc(k),
            &record.hostname,
            spec.dns.as_ref(),
            host_network,
            record.ips.first().map(String::as_str),
        )?;
        self.host.apply_sysctls(&spec.sysctls, record)?;
        let args = supervisor::Args {
            pod_dir: self.layout.pod_run(k),
            libcontainer_root: self.layout.libcontainer(),
            pid_namespace: record.namespaces.pid == NamespaceMode::Pod,
            userns: record.userns.clone(),
        };
        self.link.spawn(&self.shim, &args)?;
        crate::metrics::supervisor(SupervisorEvent::Started);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_hostnames_are_cut_like_kubernetes_does() {
        assert_eq!(fit_hostname("web-0"), "web-0");
        let long = format!("{}-abc", "a".repeat(62));
        assert_eq!(fit_hostname(&long), "a".repeat(62));
        assert_eq!(fit_hostname(&"b".repeat(100)).len(), 63);
    }

    fn web() -> (ContainerId, SandboxSpec) {
        let id = ContainerId::new("web", "sandbox", 0, "node").unwrap();
        let spec = SandboxSpec {
            name: "web".into(),
            namespace: "default".into(),
            uid: "uid-web".into(),
            ..Default::default()
        };
        (id, spec)
    }

    #[tokio::test]
    async fn a_failed_cni_add_undoes_the_pod() {
        let f = super::super::super::fake::Fixture::new();
        let (id, spec) = web();
        *f.host.failing_attaches.lock().unwrap() = 1;

        let err = f.backend.run_pod(&id, &spec).await.unwrap_err();
        assert!(err.to_string().contains("CNI ADD"), "{err}");
        let k = key(&id);
        assert_eq!(f.host.calls_to("pin").len(), 3, "pinned before the ADD");
        // Undone: the half-made attachment deleted, the pins and /dev/shm removed, no
        // supervisor started, no record, no file.
        assert_eq!(f.host.calls_to("detach"), [format!("detach {k}")]);
        assert!(f.host.pins.lock().unwrap().is_empty());
        assert!(f.host.attached.lock().unwrap().is_empty());
        assert_eq!(f.host.calls_to("unmount_shm").len(), 1);
        assert!(!f.supervisors.runs(&k));
        assert!(f.backend.pod(&id).is_err());
        assert_eq!(f.files(), Vec::<String>::new());

        // A retry makes the pod.
        let status = f.backend.run_pod(&id, &spec).await.unwrap();
        assert_eq!(status.state, SandboxState::Ready);
        assert_eq!(status.ips, ["10.85.0.2"]);
        assert_eq!(f.host.pins.lock().unwrap().len(), 3);
        assert!(f.supervisors.runs(&k));
        let status = f.backend.pod_status(&id).await.unwrap();
        assert_eq!(status.state, SandboxState::Ready);
    }

    #[tokio::test]
    async fn a_supervisor_failing_to_start_undoes_the_attached_pod() {
        let f = super::super::super::fake::Fixture::new();
        let (id, spec) = web();
        *f.supervisors.failing_spawns.lock().unwrap() = 1;

        let err = f.backend.run_pod(&id, &spec).await.unwrap_err();
        assert!(err.to_string().contains("starting the supervisor"), "{err}");
        let k = key(&id);
        // The last step failed: everything before it is undone, CNI DEL included.
        assert_eq!(f.host.calls_to("attach").len(), 1);
        assert_eq!(f.host.calls_to("detach"), [format!("detach {k}")]);
        assert!(f.host.attached.lock().unwrap().is_empty());
        assert!(f.host.pins.lock().unwrap().is_empty());
        assert!(f.backend.pod(&id).is_err());
        assert_eq!(f.files(), Vec::<String>::new());
        assert!(f.backend.run_pod(&id, &spec).await.is_ok(), "a retry works");
    }
}
