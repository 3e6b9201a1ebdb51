//! The youki backend: Linux containers run with libcontainer (youki's library) from
//! images in berth's own [`ImageStore`], one supervisor process per pod.
//!
//! The agent side (this module, in the `berth` process) keeps the records, mounts
//! rootfs overlays, finishes the OCI spec, pins namespaces and attaches networks
//! (`runtimes::network`). The pod's supervisor ([`crate::supervisor`], the same binary run as
//! `berth shim`) makes every libcontainer call and owns the container processes, their
//! stdio and logs, and their exit statuses; it outlives an agent restart. See
//! [`layout`] for what lives where on disk.

mod backend;
mod binds;
mod cgroupfs;
pub(crate) mod cgroups;
mod changes;
mod client;
pub(crate) mod clock;
mod container;
#[cfg(test)]
mod fake;
mod fdio;
pub(crate) mod features;
mod finish;
mod host;
mod inspect;
pub mod layout;
mod pod;
mod port_forward;
pub(crate) mod records;
mod recover;
mod remap;
mod rootfs;
mod sandboxes;
pub(crate) mod stats;
mod user;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, IoContext, Result};
use crate::id::ContainerId;
use crate::image::ImageStore;
use crate::network::Network;
use crate::runtime::Runtime;
use crate::types::{
    AttachRequest, ContainerSpec, ContainerState, ContainerStats, ContainerStatus, ExecOutput,
    ExecRequest, ExecStreamRequest, Features, FsUsage, ImageInfo, Inspection, PortStream,
    PullRequest, SandboxSpec, SandboxStats, SandboxStatus, StreamSession,
};
use backend::Backend;
use cgroups::Hierarchy;
use layout::Layout;
use stats::Depth;

pub use container::{stop_signal, Prepared};
pub use sandboxes::{CgroupUsage, Sandboxes};

const NAME: &str = "youki";

/// What the youki backend needs besides its images.
#[derive(Clone)]
pub struct YoukiConfig {
    /// berth's persistent state directory (records under `<state_dir>/youki`).
    pub state_dir: PathBuf,
    /// berth's runtime directory (sockets, libcontainer state; `<run_dir>/youki`).
    pub run_dir: PathBuf,
    /// The executable started as `<shim> shim …` for each pod's supervisor: berth's
    /// own binary (`std::env::current_exe()`).
    pub shim: PathBuf,
    /// Pod networks and namespace pins.
    pub network: Arc<Network>,
    /// Parent of the pod cgroups berth makes when kubelet names none (`/berth`).
    pub cgroup_parent: String,
}

/// Opens a [`Backend`] over `config`'s directories: loads its records, undoes what a
/// crash left half-made, reconnects to live supervisors (see [`YoukiRuntime::open`]).
async fn open_backend(images: Arc<ImageStore>, config: YoukiConfig) -> Result<Arc<Backend>> {
    let layout = Layout::new(&config.state_dir, &config.run_dir)?;
    for dir in [
        layout.pods(),
        layout.containers(),
        layout.pods_run(),
        layout.libcontainer(),
    ] {
        std::fs::create_dir_all(&dir).io_context(|| format!("creating {}", dir.display()))?;
    }
    let cgroup_parent = format!("/{}", config.cgroup_parent.trim_matches('/'));
    if cgroup_parent == "/" {
        return Err(Error::InvalidSpec(
            "youki: cgroup_parent must name a cgroup below the root (e.g. /berth)".into(),
        ));
    }
    let index = {
        let layout = layout.clone();
        backend::blocking(move || recover::load_index(&layout)).await?
    };
    let hierarchy = Hierarchy::detect()?;
    let host = Arc::new(host::Machine::new(
        config.network.clone(),
        hierarchy.clone(),
    ));
    let backend = Arc::new(Backend {
        layout,
        shim: config.shim,
        cgroup_parent,
        hierarchy,
        images,
        network: config.network,
        host,
        link: Arc::new(client::Socket),
        supervisors: Default::default(),
        records: backend::Records::new(index),
        changes: Default::default(),
    });
    // Every container's exit record from now on moves the listings' generation.
    let dirs: Vec<PathBuf> = backend
        .index()
        .containers
        .keys()
        .map(|id| backend.layout.container(&layout::key(id)))
        .collect();
    dirs.iter().for_each(|dir| backend.changes.watch(dir));
    let left = recover::reconcile(&backend).await;
    for e in &left {
        tracing::warn!(error = %e, "youki: recovery left work for the next start");
    }
    Ok(backend)
}

/// The youki backend: the `Runtime` trait over [`Backend`], whose verbs live one per
/// file under `pod/` and `container/`. The trait impl below is their table of
/// contents (each method names the verb that answers it); the image verbs are served
/// by the image store here.
pub struct YoukiRuntime {
    backend: Arc<Backend>,
    /// What the backend offers on this host.
    features: Features,
}

impl YoukiRuntime {
    /// Opens the backend. Loads its records, undoes what a crash left half-made,
    /// reconnects to the pods' supervisors that still run, and buries the containers
    /// of those that died (their exits are recorded as lost). What cannot be cleaned
    /// up now is logged and retried at the next open.
    pub async fn open(images: Arc<ImageStore>, config: YoukiConfig) -> Result<Self> {
        let backend = open_backend(images, config).await?;
        let features = features::probe();
        tracing::info!(?features, "youki: features on this host");
        Ok(YoukiRuntime { backend, features })
    }

    /// Runs a store call that touches the disk on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ImageStore) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let images = self.backend.images.clone();
        backend::blocking(move || f(&images)).await
    }
}

#[async_trait]
impl Runtime for YoukiRuntime {
    fn name(&self) -> &str {
        NAME
    }

    fn runs_os(&self, os: &str) -> bool {
        os == "linux"
    }

    fn features(&self) -> Features {
        self.features
    }

    async fn pull_image(&self, request: &PullRequest) -> Result<ImageInfo> {
        self.backend
            .images
            .pull(request)
            .await
            .map_err(|e| match e {
                Error::WrongPlatform {
                    image,
                    platform,
                    supported,
                    ..
                } => Error::WrongPlatform {
                    image,
                    platform,
                    backend: NAME.into(),
                    supported,
                },
                other => other,
            })
    }

    async fn image_status(&self, reference: &str) -> Result<Option<ImageInfo>> {
        let reference = reference.to_string();
        self.blocking(move |s| s.status(&reference)).await
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>> {
        self.blocking(ImageStore::list).await
    }

    async fn remove_image(&self, reference: &str) -> Result<()> {
        let reference = reference.to_string();
        self.blocking(move |s| s.remove(&reference)).await
    }

    async fn image_fs_info(&self) -> Result<Vec<FsUsage>> {
        Ok(vec![self.blocking(ImageStore::fs_info).await?])
    }

    async fn run_pod_sandbox(&self, id: &ContainerId, spec: &SandboxSpec) -> Result<SandboxStatus> {
        self.backend.run_pod(id, spec).await
    }

    async fn pod_sandbox_status(&self, id: &ContainerId) -> Result<SandboxStatus> {
        self.backend.pod_status(id).await
    }

    async fn pod_sandbox_stats(&self, id: &ContainerId) -> Result<SandboxStats> {
        self.backend.pod_stats(id, Depth::Stats).await
    }

    async fn pod_sandbox_metrics(&self, id: &ContainerId) -> Result<SandboxStats> {
        self.backend.pod_stats(id, Depth::Metrics).await
    }

    async fn stop_pod_sandbox(&self, id: &ContainerId) -> Result<()> {
        self.backend.stop_pod(id).await
    }

    async fn remove_pod_sandbox(&self, id: &ContainerId) -> Result<()> {
        self.backend.remove_pod(id).await
    }

    async fn update_pod_sandbox_resources(
        &self,
        id: &ContainerId,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        self.backend.update_pod_resources(id, resources).await
    }

    async fn create_container(
        &self,
        sandbox: &ContainerId,
        id: &ContainerId,
        spec: &ContainerSpec,
    ) -> Result<()> {
        self.backend.create_container(sandbox, id, spec).await
    }

    async fn start_container(&self, id: &ContainerId) -> Result<()> {
        self.backend.start_container(id).await
    }

    async fn stop_container(&self, id: &ContainerId, timeout: Duration) -> Result<()> {
        self.backend.stop_container(id, timeout).await
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<()> {
        self.backend.remove_container(id).await
    }

    async fn container_status(&self, id: &ContainerId) -> Result<ContainerStatus> {
        self.backend.container_status(id).await
    }

    fn state_generation(&self) -> Option<u64> {
        self.backend.state_generation()
    }

    async fn container_states(&self, ids: &[ContainerId]) -> Vec<Result<ContainerState>> {
        self.backend.container_states(ids).await
    }

    async fn inspect(&self, id: &ContainerId) -> Result<Inspection> {
        self.backend.inspect(id).await
    }

    async fn update_container_resources(
        &self,
        id: &ContainerId,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        self.backend.update_resources(id, resources).await
    }

    async fn reopen_container_log(&self, id: &ContainerId) -> Result<()> {
        self.backend.reopen_log(id).await
    }

    async fn exec_sync(&self, id: &ContainerId, request: &ExecRequest) -> Result<ExecOutput> {
        self.backend.exec_sync(id, request).await
    }

    async fn container_stats(&self, id: &ContainerId) -> Result<ContainerStats> {
        self.backend.container_stats(id, Depth::Stats).await
    }

    async fn container_metrics(&self, id: &ContainerId) -> Result<ContainerStats> {
        self.backend.container_stats(id, Depth::Metrics).await
    }

    async fn exec(&self, id: &ContainerId, request: &ExecStreamRequest) -> Result<StreamSession> {
        self.backend.exec_stream(id, request).await
    }

    async fn attach(&self, id: &ContainerId, request: &AttachRequest) -> Result<StreamSession> {
        self.backend.attach(id, request).await
    }

    async fn port_forward(&self, sandbox: &ContainerId, port: u16) -> Result<PortStream> {
        self.backend.port_forward(sandbox, port).await
    }
}
