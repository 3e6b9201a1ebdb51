//! A fake [`Host`] with faults to inject, and a backend over temporary directories:
//! the orchestration's unit tests run without root (nothing is mounted, no cgroup is
//! touched, no CNI plugin runs). Its supervisors never run: every pod is one whose
//! supervisor is gone, a state the backend handles.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tempfile::TempDir;

use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::image::{ImageStore, RegistryConfig};
use crate::network::{Network, NetworkConfig, NsKind, PodNetwork};
use crate::types::NamespaceOptions;

use super::backend::{Backend, Parts};
use super::cgroups::Hierarchy;
use super::host::Host;
use super::layout::{key, Layout};
use super::records::{ContainerPhase, ContainerRecord, PodPhase, PodRecord};
use super::recover;

/// A host that keeps what it was asked in memory, and fails where told.
#[derive(Default)]
pub struct FakeHost {
    /// Pods (by key) attached to the network and not detached yet.
    pub attached: Mutex<BTreeSet<String>>,
    /// Cgroups removed, in order.
    pub removed_cgroups: Mutex<Vec<String>>,
    /// Every call, in order (`detach <key>`, `remove_rootfs <dir>`, …).
    pub calls: Mutex<Vec<String>>,
    /// How many of the next CNI DELs fail.
    pub failing_detaches: Mutex<usize>,
    /// Rootfs directories whose next unmount fails.
    pub failing_unmounts: Mutex<Vec<PathBuf>>,
}

impl FakeHost {
    fn log(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }

    /// The calls made so far that start with `prefix`.
    pub fn calls_to(&self, prefix: &str) -> Vec<String> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|c| c.starts_with(prefix))
            .cloned()
            .collect()
    }
}

fn fault(what: String) -> Error {
    Error::io(what, std::io::Error::other("injected fault"))
}

fn remove_dir_all(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("removing {}", dir.display()), e))
        }
        _ => Ok(()),
    }
}

#[async_trait]
impl Host for FakeHost {
    async fn detach(&self, key: &str, _netns: Option<&Path>, _pod: &PodNetwork) -> Result<()> {
        self.log(format!("detach {key}"));
        {
            let mut failing = self.failing_detaches.lock().unwrap();
            if *failing > 0 {
                *failing -= 1;
                return Err(fault(format!("CNI DEL of pod {key}")));
            }
        }
        self.attached.lock().unwrap().remove(key);
        Ok(())
    }

    fn unpin(&self, kind: NsKind, key: &str) -> Result<()> {
        self.log(format!("unpin {kind:?} {key}"));
        Ok(())
    }

    fn unmount_shm(&self, dir: &Path) -> Result<()> {
        self.log(format!("unmount_shm {}", dir.display()));
        remove_dir_all(dir)
    }

    fn remove_rootfs(&self, dir: &Path) -> Result<()> {
        self.log(format!("remove_rootfs {}", dir.display()));
        let mut failing = self.failing_unmounts.lock().unwrap();
        if let Some(at) = failing.iter().position(|d| d == dir) {
            failing.remove(at);
            return Err(fault(format!("unmounting {}", dir.display())));
        }
        remove_dir_all(dir)
    }

    fn kill_cgroup(&self, cgroup: &str, _patience: Duration) -> bool {
        self.log(format!("kill_cgroup {cgroup}"));
        true
    }

    fn remove_cgroup(&self, cgroup: &str) -> Result<()> {
        self.log(format!("remove_cgroup {cgroup}"));
        self.removed_cgroups
            .lock()
            .unwrap()
            .push(cgroup.to_string());
        Ok(())
    }
}

/// A backend over temporary directories and a [`FakeHost`].
pub struct Fixture {
    /// Holds every directory of the backend.
    pub dir: TempDir,
    /// The fake host.
    pub host: Arc<FakeHost>,
    /// The backend.
    pub backend: Arc<Backend>,
}

impl Fixture {
    /// An empty backend.
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let host = Arc::new(FakeHost::default());
        let backend = Self::open(dir.path(), &host);
        Fixture { dir, host, backend }
    }

    /// A backend over the records under `root`, as `YoukiRuntime::open` loads them.
    fn open(root: &Path, host: &Arc<FakeHost>) -> Arc<Backend> {
        let images = ImageStore::open(&root.join("images"), RegistryConfig::default()).unwrap();
        let network = NetworkConfig {
            conf_dir: root.join("cni"),
            plugin_dirs: vec![root.join("plugins")],
            ..NetworkConfig::default()
        };
        let network = Network::new(network, &root.join("net")).unwrap();
        Self::load(root, host, Arc::new(images), Arc::new(network))
    }

    fn load(
        root: &Path,
        host: &Arc<FakeHost>,
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
        let parts = Parts {
            layout,
            shim: root.join("no-shim"),
            cgroup_parent: "/berth".into(),
            hierarchy: Hierarchy::V2 {
                root: root.join("cgroup"),
            },
            images,
            network,
            host: host.clone(),
        };
        Arc::new(Backend::new(parts, index))
    }

    /// The backend of a restarted agent: the records on disk loaded again, the same
    /// host (and the same image store and network, which stay open). Recovery is
    /// not run.
    pub fn restart(&mut self) {
        let (images, network) = (self.backend.images.clone(), self.backend.network.clone());
        self.backend = Self::load(self.dir.path(), &self.host, images, network);
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
        self.host.attached.lock().unwrap().insert(k);
        id
    }

    /// A created container named `role` in `pod`, with its rootfs and libcontainer
    /// state.
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
