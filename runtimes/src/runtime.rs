//! The `Runtime` trait: what every backend (youki, containerd, delegate) offers.
//!
//! Methods take the object's [`ContainerId`]; CRI ids never reach a backend. Image
//! operations and the identity of the backend are required; the pod and container
//! verbs default to a typed [`Error::Unsupported`] so a backend can grow into them.

use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::types::{AttachRequest, ExecStreamRequest, PortStream, StreamSession};
use crate::types::{
    ContainerSpec, ContainerState, ContainerStats, ContainerStatus, ExecOutput, ExecRequest,
    Features, FsUsage, ImageInfo, Inspection, PullRequest, SandboxSpec, SandboxStats,
    SandboxStatus,
};

/// A container runtime backend.
#[async_trait]
pub trait Runtime: Send + Sync {
    /// The backend's name, as pod records, routes and messages show it (`youki`, …).
    fn name(&self) -> &str;

    /// True when this backend runs workloads for `os` (an OCI `os` value, `linux`).
    fn runs_os(&self, os: &str) -> bool;

    /// The optional features this backend offers on this host; none by default.
    fn features(&self) -> Features {
        Features::default()
    }

    /// Whether the backend can serve now; the error says why not (an unreachable
    /// daemon, naming its address). Ready by default.
    async fn ready(&self) -> Result<()> {
        Ok(())
    }

    /// Pulls an image (or finds it already present) and describes it.
    async fn pull_image(&self, request: &PullRequest) -> Result<ImageInfo>;

    /// Describes an image by reference, id or digest; `Ok(None)` when absent.
    async fn image_status(&self, reference: &str) -> Result<Option<ImageInfo>>;

    /// Every image this backend holds.
    async fn list_images(&self) -> Result<Vec<ImageInfo>>;

    /// Removes an image by reference, id or digest. Removing an absent image succeeds.
    async fn remove_image(&self, reference: &str) -> Result<()>;

    /// Usage of the filesystems that hold this backend's images.
    async fn image_fs_info(&self) -> Result<Vec<FsUsage>>;

    /// Creates and starts the pod sandbox `id` (namespaces, network). A failure leaves
    /// nothing behind.
    async fn run_pod_sandbox(&self, id: &ContainerId, spec: &SandboxSpec) -> Result<SandboxStatus> {
        let _ = (id, spec);
        Err(self.unsupported("RunPodSandbox"))
    }

    /// The sandbox `id` as the backend sees it.
    async fn pod_sandbox_status(&self, id: &ContainerId) -> Result<SandboxStatus> {
        let _ = id;
        Err(self.unsupported("PodSandboxStatus"))
    }

    /// Resource usage of the whole pod `id`.
    async fn pod_sandbox_stats(&self, id: &ContainerId) -> Result<SandboxStats> {
        let _ = id;
        Err(self.unsupported("PodSandboxStats"))
    }

    /// [`Runtime::pod_sandbox_stats`] with [`SandboxStats::detail`] filled as far as
    /// the backend can (what only CRI metrics report: reading it costs more than
    /// kubelet's stats listings should pay). The default: the stats.
    async fn pod_sandbox_metrics(&self, id: &ContainerId) -> Result<SandboxStats> {
        self.pod_sandbox_stats(id).await
    }

    /// Stops every process of the sandbox `id`; stopping a missing sandbox succeeds.
    async fn stop_pod_sandbox(&self, id: &ContainerId) -> Result<()> {
        let _ = id;
        Err(self.unsupported("StopPodSandbox"))
    }

    /// Removes the sandbox `id` and everything it holds; removing a missing one succeeds.
    async fn remove_pod_sandbox(&self, id: &ContainerId) -> Result<()> {
        let _ = id;
        Err(self.unsupported("RemovePodSandbox"))
    }

    /// Creates the container `id` inside the sandbox `sandbox`.
    async fn create_container(
        &self,
        sandbox: &ContainerId,
        id: &ContainerId,
        spec: &ContainerSpec,
    ) -> Result<()> {
        let _ = (sandbox, id, spec);
        Err(self.unsupported("CreateContainer"))
    }

    /// Starts the created container `id`.
    async fn start_container(&self, id: &ContainerId) -> Result<()> {
        let _ = id;
        Err(self.unsupported("StartContainer"))
    }

    /// Stops the container `id`, killing it after `timeout`.
    async fn stop_container(&self, id: &ContainerId, timeout: Duration) -> Result<()> {
        let _ = (id, timeout);
        Err(self.unsupported("StopContainer"))
    }

    /// Removes the container `id`; removing a missing one succeeds.
    async fn remove_container(&self, id: &ContainerId) -> Result<()> {
        let _ = id;
        Err(self.unsupported("RemoveContainer"))
    }

    /// The container `id` as the backend sees it.
    async fn container_status(&self, id: &ContainerId) -> Result<ContainerStatus> {
        let _ = id;
        Err(self.unsupported("ContainerStatus"))
    }

    /// Where the pod sandbox or container `id` lives on the host (supervisor,
    /// cgroup, network namespace), for verbose status. The default knows nothing.
    async fn inspect(&self, id: &ContainerId) -> Result<Inspection> {
        let _ = id;
        Ok(Inspection::default())
    }

    /// A number that moves whenever the state of any of the backend's pod sandboxes or
    /// containers may have changed (a verb, an exit, a lost process), read before
    /// asking [`Runtime::container_states`] or [`Runtime::pod_sandbox_status`]: a
    /// state read at the generation still current is still right, so listings keep it
    /// instead of asking again. `None` (the default):
    /// the backend cannot tell, every listing asks.
    fn state_generation(&self) -> Option<u64> {
        None
    }

    /// The state of each of `ids`, in order, in one pass meant to be cheap: listings
    /// call it on every request (kubelet's PLEG lists every second) for the containers
    /// that may have changed on their own. The default asks [`Runtime::container_status`]
    /// of each; a backend that can tell without a call per container overrides it.
    async fn container_states(&self, ids: &[ContainerId]) -> Vec<Result<ContainerState>> {
        let asked = ids.iter().map(|id| self.container_status(id));
        futures::future::join_all(asked)
            .await
            .into_iter()
            .map(|status| status.map(|s| s.state))
            .collect()
    }

    /// Applies new resource limits to the running or created container `id`.
    async fn update_container_resources(
        &self,
        id: &ContainerId,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        let _ = (id, resources);
        Err(self.unsupported("UpdateContainerResources"))
    }

    /// Applies new limits to the pod sandbox `id`'s own cgroup (in-place pod resize):
    /// `resources` is the pod's overhead plus the sum of its containers'. Nothing
    /// restarts.
    async fn update_pod_sandbox_resources(
        &self,
        id: &ContainerId,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        let _ = (id, resources);
        Err(self.unsupported("UpdatePodSandboxResources"))
    }

    /// Reopens the container's log file (after kubelet rotated it).
    async fn reopen_container_log(&self, id: &ContainerId) -> Result<()> {
        let _ = id;
        Err(self.unsupported("ReopenContainerLog"))
    }

    /// Runs a command in the running container `id` and waits for it. A timeout kills
    /// the command, never the container.
    async fn exec_sync(&self, id: &ContainerId, request: &ExecRequest) -> Result<ExecOutput> {
        let _ = (id, request);
        Err(self.unsupported("ExecSync"))
    }

    /// Resource usage of the container `id`.
    async fn container_stats(&self, id: &ContainerId) -> Result<ContainerStats> {
        let _ = id;
        Err(self.unsupported("ContainerStats"))
    }

    /// [`Runtime::container_stats`] with [`ContainerStats::detail`] filled as far as
    /// the backend can (see [`Runtime::pod_sandbox_metrics`]). The default: the stats.
    async fn container_metrics(&self, id: &ContainerId) -> Result<ContainerStats> {
        self.container_stats(id).await
    }

    /// Starts `request.cmd` in the running container `id` with the streams the request
    /// asks for (the interactive `Exec`). See [`StreamSession`] for who ends what.
    async fn exec(&self, id: &ContainerId, request: &ExecStreamRequest) -> Result<StreamSession> {
        let _ = (id, request);
        Err(self.unsupported("Exec"))
    }

    /// Attaches to the main process of the running container `id`. Several clients
    /// may be attached at once; dropping the session detaches only this one.
    async fn attach(&self, id: &ContainerId, request: &AttachRequest) -> Result<StreamSession> {
        let _ = (id, request);
        Err(self.unsupported("Attach"))
    }

    /// Connects to `port` on the loopback of the sandbox `sandbox`'s network
    /// namespace. Each call is one TCP connection; dropping it closes it.
    async fn port_forward(&self, sandbox: &ContainerId, port: u16) -> Result<PortStream> {
        let _ = (sandbox, port);
        Err(self.unsupported("PortForward"))
    }

    /// The typed error for an operation this backend does not implement.
    fn unsupported(&self, operation: &'static str) -> Error {
        Error::Unsupported {
            backend: self.name().to_string(),
            operation,
        }
    }
}
