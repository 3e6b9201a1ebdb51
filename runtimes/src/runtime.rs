//! The `Runtime` trait: what every backend (youki, containerd, delegate) offers.
//!
//! Methods take the object's [`ContainerId`]; CRI ids never reach a backend. Image
//! operations and the identity of the backend are required; the pod and container
//! verbs default to a typed [`Error::Unsupported`] so a backend can grow into them.

use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::types::{ContainerSpec, FsUsage, ImageInfo, PullRequest, SandboxSpec};

/// A container runtime backend.
#[async_trait]
pub trait Runtime: Send + Sync {
    /// The backend's name, as dispatch records and messages show it (`youki`, …).
    fn name(&self) -> &str;

    /// True when this backend runs workloads for `os` (an OCI `os` value, `linux`).
    fn runs_os(&self, os: &str) -> bool;

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

    /// Creates and starts the pod sandbox `id`.
    async fn run_pod_sandbox(&self, id: &ContainerId, spec: &SandboxSpec) -> Result<()> {
        let _ = (id, spec);
        Err(self.unsupported("RunPodSandbox"))
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

    /// The typed error for an operation this backend does not implement.
    fn unsupported(&self, operation: &'static str) -> Error {
        Error::Unsupported {
            backend: self.name().to_string(),
            operation,
        }
    }
}
