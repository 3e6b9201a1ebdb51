//! A backend over temporary directories, a fake host ([`FakeHost`]) and fake
//! supervisors ([`FakeSupervisors`]), both with faults to inject: the orchestration's
//! unit tests run without root (nothing is mounted, no cgroup is touched, no CNI
//! plugin runs, no supervisor process starts).

mod host;
mod supervisor;

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use berth_proto::supervisor::container_state::Status;
use tempfile::TempDir;

use crate::id::ContainerId;
use crate::image::{ImageStore, RegistryConfig};
use crate::network::{Network, NetworkConfig};
use crate::types::NamespaceOptions;

use super::backend::{Backend, Records};
use super::cgroups::Hierarchy;
use super::layout::{key, Layout};
use super::records::{ContainerPhase, ContainerRecord, PodPhase, PodRecord};
use super::recover;

pub use host::FakeHost;
pub use supervisor::{FakeContainer, FakeSupervisors};

/// A backend over temporary directories, a [`FakeHost`] and [`FakeSupervisors`].
pub struct Fixture {
    /// Holds every directory of the backend.
    pub dir: TempDir,
    /// The fake host.
    pub host: Arc<FakeHost>,
    /// The fake supervisors.
    pub supervisors: Arc<FakeSupervisors>,
    /// The backend.
    pub backend: Arc<Backend>,
}

impl Fixture {
    /// An empty backend.
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let host = Arc::new(FakeHost::default());
        let supervisors = Arc::new(FakeSupervisors::default());
        let backend = Self::open(dir.path(), &host, &supervisors);
        Fixture {
            dir,
            host,
            supervisors,
            backend,
        }
    }

    /// A backend over the records under `root`, as `YoukiRuntime::open` loads them.
    fn open(root: &Path, host: &Arc<FakeHost>, supervisors: &Arc<FakeSupervisors>) -> Arc<Backend> {
        let images = ImageStore::open(&root.join("images"), RegistryConfig::default()).unwrap();
        let network = NetworkConfig {
            conf_dir: root.join("cni"),
            plugin_dirs: vec![root.join("plugins")],
            ..NetworkConfig::default()
        };
        let network = Network::new(network, &root.join("net")).unwrap();
        Self::load(root, host, supervisors, Arc::new(images), Arc::new(network))
    }

    fn load(
        root: &Path,
        host: &Arc<FakeHost>,
        supervisors: &Arc<FakeSupervisors>,
        images: Arc<ImageStore>,
        network: Arc<Network>,
    ) -> Arc<Backend> {
        let layout = Layout::new(&root.join("state"), &root.join("run")).unwrap();
        for d in [
            layout.pods(),
            layout.containers(),
            layout.pods_run(),
            layout.libcontainer(),
        ] {
            fs::create_dir_all(d).unwrap();
        }
        let index = recover::load_index(&layout).unwrap();
        Arc::new(Backend {
            layout,
            shim: root.join("no-shim"),
            cgroup_parent: "/berth".into(),
            hierarchy: Hierarchy::V2 {
                root: root.join("cgroup"),
            },
            images,
            network,
            host: host.clone(),
            link: supervisors.clone(),
            supervisors: Default::default(),
            records: Records::new(index),
            changes: Default::default(),
        })
    }

    /// The backend of a restarted agent: the records on disk loaded again, the same
    /// host and supervisors (and the same image store and network, which stay open).
    /// Recovery is not run.
    pub fn restart(&mut self) {
        let (images, network) = (self.backend.images.clone(), self.backend.network.clone());
        self.backend = Self::load(
            self.dir.path(),
            &self.host,
            &self.supervisors,
            images,
            network,
        );
    }

    /// An image of no layers in the backend's store; returns its reference.
    pub fn image(&self) -> String {
        let reference = "docker.io/library/busybox:latest";
        self.backend.images.add_empty_image(reference).unwrap();
        reference.into()
    }

    /// A ready pod named `name` whose supervisor runs (see [`Fixture::pod`]).
    pub fn live_pod(&self, name: &str) -> ContainerId {
        let id = self.pod(name);
        self.supervisors.start(&key(&id));
        id
    }

    /// A ready pod named `name`, attached to the network, with its pins, runtime
    /// directory and `/dev/shm`, in a cgroup of its own; its supervisor is gone.
    pub fn pod(&self, name: &str) -> ContainerId {
        let id = ContainerId::new(name, "sandbox", 0, "node").unwrap();
        let k = key(&id);
        let layout = &self.backend.layout;
        let pin = |kind: &str| Some(self.dir.path().join(kind).join(&k));
        let record = PodRecord {
            id: id.clone(),
            phase: PodPhase::Ready,
            created_at: SystemTime::now(),
            name: name.into(),
            namespace: "default".into(),
            uid: format!("uid-{name}"),
            hostname: name.into(),
            namespaces: NamespaceOptions::default(),
            port_mappings: Vec::new(),
            netns: pin("netns"),
            ipcns: pin("ipcns"),
            utsns: pin("utsns"),
            userns: None,
            ips: vec!["10.85.0.2".into()],
            cgroup: format!("/berth/{k}"),
            owns_cgroup: true,
        };
        fs::create_dir_all(layout.pod_etc(&k)).unwrap();
        fs::create_dir_all(layout.pod_shm(&k)).unwrap();
        self.backend.save_pod(&record).unwrap();
        let mut pins = self.host.pins.lock().unwrap();
        pins.extend(["Net", "Uts", "Ipc"].map(|kind| format!("{kind} {k}")));
        self.host.attached.lock().unwrap().insert(k);
        id
    }

    /// A created container named `role` in `pod`, with its rootfs and libcontainer
    /// state; held by the pod's supervisor when that runs.
    pub fn container(&self, pod: &ContainerId, role: &str) -> ContainerId {
        let id = pod.with_role(role).unwrap();
        let k = key(&id);
        let layout = &self.backend.layout;
        let record = ContainerRecord {
            id: id.clone(),
            pod: pod.clone(),
            phase: ContainerPhase::Created,
            created_at: SystemTime::now(),
            started_at: Some(SystemTime::now()),
            log_path: None,
            cgroup: format!("/berth/{}/{k}", key(pod)),
            user: None,
            cwd: "/".into(),
            stop_signal: libc::SIGTERM,
            own_pid_namespace: true,
        };
        fs::create_dir_all(layout.rootfs(&k).join("upper")).unwrap();
        fs::create_dir_all(layout.libcontainer().join(&k)).unwrap();
        self.backend.save_container(&record).unwrap();
        if self.supervisors.runs(&key(pod)) {
            let created = FakeContainer {
                status: Status::Created,
                pid: 1000,
                exit_code: 0,
            };
            self.supervisors.hold(&key(pod), &k, created);
        }
        id
    }

    /// What is left under the backend's directories (relative paths, sorted).
    pub fn files(&self) -> Vec<String> {
        let layout = &self.backend.layout;
        let mut out = Vec::new();
        for top in [
            layout.pods(),
            layout.containers(),
            layout.pods_run(),
            layout.libcontainer(),
        ] {
            walk(&top, self.dir.path(), &mut out);
        }
        out.sort();
        out
    }
}

fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        out.push(path.strip_prefix(root).unwrap().display().to_string());
        if path.is_dir() {
            walk(&path, root, out);
        }
    }
}
