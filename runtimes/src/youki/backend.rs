//! The youki backend's shared state: paths, the records of every pod and container
//! (on disk, mirrored in memory), per-object locks, and the helpers the verbs share.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::image::ImageStore;
use crate::network::Network;

use super::cgroups::Hierarchy;
use super::changes::Changes;
use super::client::{Client, Link};
use super::host::Host;
use super::layout::{key, Layout};
use super::records::{ContainerRecord, PodRecord};
use super::watch::Supervisors;
use super::NAME;

/// Every pod and container record, as on disk.
#[derive(Debug, Default)]
pub struct Index {
    /// Pods by id.
    pub pods: BTreeMap<ContainerId, PodRecord>,
    /// Containers by id.
    pub containers: BTreeMap<ContainerId, ContainerRecord>,
    /// Removed containers whose teardown runs or failed (phase `Removing`): kept apart
    /// so that no verb sees them.
    pub removing: BTreeMap<ContainerId, ContainerRecord>,
}

impl Index {
    /// The containers of `pod`.
    pub fn containers_of(&self, pod: &ContainerId) -> Vec<ContainerRecord> {
        self.containers
            .values()
            .filter(|c| &c.pod == pod)
            .cloned()
            .collect()
    }

    /// The removed containers of `pod` whose teardown is not done.
    pub fn removing_of(&self, pod: &ContainerId) -> Vec<ContainerRecord> {
        self.removing
            .values()
            .filter(|c| &c.pod == pod)
            .cloned()
            .collect()
    }
}

/// The backend's state, shared by the verbs. Built field by field where it is opened
/// (`YoukiRuntime::open`, the unit tests' fixture); its records start loaded.
pub struct Backend {
    /// Where things live.
    pub layout: Layout,
    /// The executable run as `<shim> shim …` to start a pod's supervisor.
    pub shim: PathBuf,
    /// Parent of the pod cgroups berth makes (`/berth`).
    pub cgroup_parent: String,
    /// The cgroup hierarchy containers live in.
    pub hierarchy: Hierarchy,
    /// Images (rootfs layers).
    pub images: Arc<ImageStore>,
    /// Pod networks and namespace pins.
    pub network: Arc<Network>,
    /// The host side of making and tearing down (pins, CNI, mounts, cgroups).
    pub host: Arc<dyn Host>,
    /// The way to the pods' supervisors.
    pub link: Arc<dyn Link>,
    /// Whether each pod's supervisor runs.
    pub supervisors: Supervisors,
    /// The records, in memory, and the per-object locks.
    pub records: Records,
    /// The generation of the containers' states (listings read again what moved).
    pub changes: Changes,
}

/// The in-memory records and the locks that serialize work on each object.
pub struct Records {
    index: Mutex<Index>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Records {
    /// The records of `index` (loaded by `recover::load_index`), no lock taken.
    pub fn new(index: Index) -> Records {
        Records {
            index: Mutex::new(index),
            locks: Mutex::default(),
        }
    }
}

impl Backend {
    /// The in-memory records. Never held across an await or a slow call.
    pub fn index(&self) -> MutexGuard<'_, Index> {
        self.records.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serializes operations on one object (a pod or a container, by key). A pod's
    /// lock is always taken before its containers'.
    pub async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.records.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.retain(|_, l| Arc::strong_count(l) > 1);
            locks.entry(key.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// The pod record of `id`, or `NotFound`.
    pub fn pod(&self, id: &ContainerId) -> Result<PodRecord> {
        self.index()
            .pods
            .get(id)
            .cloned()
            .ok_or_else(|| Error::not_found("pod sandbox", id))
    }

    /// The container record of `id`, or `NotFound`.
    pub fn container(&self, id: &ContainerId) -> Result<ContainerRecord> {
        self.index()
            .containers
            .get(id)
            .cloned()
            .ok_or_else(|| Error::not_found("container", id))
    }

    /// Saves a pod record to disk, then to the index.
    pub fn save_pod(&self, record: &PodRecord) -> Result<()> {
        super::records::save(&self.layout.pod_record(&key(&record.id)), record)?;
        self.index().pods.insert(record.id.clone(), record.clone());
        self.changes.bump();
        Ok(())
    }

    /// Saves a container record to disk, then to the index.
    pub fn save_container(&self, record: &ContainerRecord) -> Result<()> {
        super::records::save(&self.layout.container_record(&key(&record.id)), record)?;
        self.index()
            .containers
            .insert(record.id.clone(), record.clone());
        self.changes.bump();
        Ok(())
    }

    /// The generation of the pods' and containers' states ([`Changes`]): moves
    /// whenever a pod's or a container's state may have (a record written, an exit
    /// recorded, a supervisor gone); `None` when a change could go unseen (a
    /// directory or a supervisor that could not be watched).
    pub fn state_generation(&self) -> Option<u64> {
        if self.supervisors.blind() {
            return None;
        }
        let changes = self.changes.generation()?;
        Some(changes + self.supervisors.deaths())
    }

    /// The supervisor of the pod `pod`.
    pub fn supervisor(&self, pod: &ContainerId) -> Client {
        self.supervisor_of(&key(pod))
    }

    /// The supervisor of the pod keyed `k`.
    pub fn supervisor_of(&self, k: &str) -> Client {
        Client::new(self.link.clone(), self.layout.socket(k))
    }
}

/// Runs `f` on tokio's blocking pool (file systems, mounts, supervisor calls).
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    // In the caller's span: a supervisor call is a child of the backend call, and its
    // lines name the CRI call's pod and container.
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(|e| Error::internal(NAME, "a blocking task failed", e))?
}

/// Reports what failed while undoing a half-made object. The undo is retried (its
/// record stays on disk) when the backend opens next; the caller returns the error that
/// made it undo.
pub fn warn_cleanup(what: &str, cleanup: &[Error]) {
    if !cleanup.is_empty() {
        let failures: Vec<String> = cleanup.iter().map(ToString::to_string).collect();
        tracing::warn!(object = what, failures = %failures.join("; "), "undoing a failed create left work for the next start");
    }
}
