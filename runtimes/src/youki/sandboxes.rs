//! youki's pods lent to another backend: the containerd backend runs its containers in
//! pods made exactly as youki makes them (pinned namespaces, CNI, `/etc` files,
//! `/dev/shm`, cgroup, supervisor holding a shared PID namespace), so networking,
//! hostPorts and `PodSandboxStatus` behave the same whichever backend runs a pod.
//!
//! The lending backend keeps its own records (its own [`YoukiConfig`] directories): its
//! containers never enter this index, so a pod stop here only takes down the pod's
//! own parts; the borrower stops and removes its containers first.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::image::ImageStore;
use crate::types::{
    ContainerSpec, Inspection, PortStream, SandboxSpec, SandboxStats, SandboxStatus,
};

use super::backend::{blocking, Backend};
use super::container::Prepared;
use super::layout::key;
use super::records::PodPhase;
use super::{open_backend, stats, YoukiConfig};

/// The cgroup usage numbers of a container (see [`Sandboxes::usage`]).
pub use super::stats::{CgroupUsage, Depth};

/// Pods made by youki, for a backend that runs its containers elsewhere.
#[derive(Clone)]
pub struct Sandboxes {
    backend: Arc<Backend>,
}

impl Sandboxes {
    /// Opens the pods recorded under `config`'s directories (recovering them as youki
    /// does at start-up).
    pub async fn open(images: Arc<ImageStore>, config: YoukiConfig) -> Result<Self> {
        Ok(Sandboxes {
            backend: open_backend(images, config).await?,
        })
    }

    /// The image store the pods' containers are made from.
    pub fn images(&self) -> &Arc<ImageStore> {
        &self.backend.images
    }

    /// Makes the pod `id` (see `RunPodSandbox`).
    pub async fn run(&self, id: &ContainerId, spec: &SandboxSpec) -> Result<SandboxStatus> {
        self.backend.run_pod(id, spec).await
    }

    /// The pod `id`.
    pub async fn status(&self, id: &ContainerId) -> Result<SandboxStatus> {
        self.backend.pod_status(id).await
    }

    /// The pod's supervisor, cgroup and network namespace.
    pub async fn inspect(&self, id: &ContainerId) -> Result<Inspection> {
        self.backend.inspect(id).await
    }

    /// The pod's resource usage (its cgroup holds every container).
    pub async fn stats(&self, id: &ContainerId, depth: Depth) -> Result<SandboxStats> {
        self.backend.pod_stats(id, depth).await
    }

    /// New limits for the pod's cgroup (in-place pod resize).
    pub async fn update_resources(
        &self,
        id: &ContainerId,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        self.backend.update_pod_resources(id, resources).await
    }

    /// Takes the pod's network down (its containers must be stopped already).
    pub async fn stop(&self, id: &ContainerId) -> Result<()> {
        self.backend.stop_pod(id).await
    }

    /// Removes the pod (its containers must be removed already).
    pub async fn remove(&self, id: &ContainerId) -> Result<()> {
        self.backend.remove_pod(id).await
    }

    /// A connection to `port` in the pod's network namespace.
    pub async fn port_forward(&self, id: &ContainerId, port: u16) -> Result<PortStream> {
        self.backend.port_forward(id, port).await
    }

    /// The pods recorded here.
    pub fn pods(&self) -> Vec<ContainerId> {
        self.backend.index().pods.keys().cloned().collect()
    }

    /// Whether the pod `id` exists.
    pub fn has_pod(&self, id: &ContainerId) -> bool {
        self.backend.index().pods.contains_key(id)
    }

    /// The directory that holds the container `id`'s files (its rootfs among them).
    pub fn container_dir(&self, id: &ContainerId) -> PathBuf {
        self.backend.layout.container(&key(id))
    }

    /// The directories of every container made here so far.
    pub fn container_dirs(&self) -> Result<Vec<PathBuf>> {
        let root = self.backend.layout.containers();
        let entries = match std::fs::read_dir(&root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("listing {}", root.display()), e)),
        };
        Ok(entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect())
    }

    /// Mounts the rootfs and the image volumes of the container `id` of the ready pod
    /// `sandbox` and finishes its spec for runc (the native cgroup mount is kept: runc
    /// makes it right). On failure nothing is left.
    pub async fn prepare(
        &self,
        sandbox: &ContainerId,
        id: &ContainerId,
        spec: &ContainerSpec,
    ) -> Result<Prepared> {
        let me = self.backend.clone();
        let (sandbox, id, spec) = (sandbox.clone(), id.clone(), spec.clone());
        let _pod = self.backend.lock(&key(&sandbox)).await;
        blocking(move || {
            let pod = me.pod(&sandbox)?;
            if pod.phase != PodPhase::Ready {
                return Err(Error::FailedPrecondition(format!(
                    "CreateContainer {id}: pod sandbox {sandbox} is not ready"
                )));
            }
            let k = key(&id);
            match me.prepare(&k, &id, &pod, &spec) {
                Ok(prepared) => Ok(prepared),
                Err(e) => {
                    if let Err(cleanup) = me.host.remove_rootfs(&me.layout.rootfs(&k)) {
                        tracing::warn!(container = %id, error = %cleanup, "undoing a failed prepare");
                    }
                    Err(e)
                }
            }
        })
        .await
    }

    /// Unmounts and removes the container `id`'s rootfs, its image volumes and its
    /// directory; idempotent.
    pub async fn discard(&self, id: &ContainerId) -> Result<()> {
        let me = self.backend.clone();
        let k = key(id);
        blocking(move || {
            me.host.remove_rootfs(&me.layout.rootfs(&k))?;
            let dir = me.layout.container(&k);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::io(format!("removing {}", dir.display()), e)),
            }
        })
        .await
    }

    /// How many processes of `cgroup` the OOM killer killed.
    pub fn oom_kills(&self, cgroup: &str) -> u64 {
        if cgroup.is_empty() {
            return 0;
        }
        self.backend.hierarchy.oom_kills(cgroup)
    }

    /// The usage of `cgroup` (to `depth`) and the size of the writable layer of `id`.
    pub async fn usage(
        &self,
        id: &ContainerId,
        cgroup: &str,
        depth: Depth,
    ) -> Result<(CgroupUsage, PathBuf, crate::types::FsUsage)> {
        let me = self.backend.clone();
        let (k, cgroup) = (key(id), cgroup.to_string());
        blocking(move || {
            let usage = stats::read(&me.hierarchy, &cgroup, depth);
            let upper = super::rootfs::upper(&me.layout.rootfs(&k));
            let layer = crate::image::usage::usage(&upper)?;
            Ok((usage, upper, layer))
        })
        .await
    }
}
