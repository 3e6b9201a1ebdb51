//! What the store keeps about each pod sandbox and container: enough to answer every
//! CRI status and list call after a restart without asking kubelet again.

use std::path::PathBuf;

use berth_proto::cri::v1::{ContainerConfig, LinuxContainerResources, PodSandboxConfig};
use runtimes::ContainerId;
use serde::{Deserialize, Serialize};

/// Where a sandbox is in its life, as the agent recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxPhase {
    /// Recorded before the backend was asked to run it; rolled back at start-up.
    Creating,
    /// Running, with its network set up.
    Ready,
    /// Stopped (or found gone by the backend).
    NotReady,
}

/// Where a container is in its life, as the agent recorded it. Whether it runs or
/// exited is the backend's to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerPhase {
    /// Recorded before the backend was asked to create it; rolled back at start-up.
    Creating,
    /// Created by the backend.
    Created,
}

/// A pod sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxRecord {
    /// The CRI id (64 hex characters).
    pub id: String,
    /// Its ContainerId.
    pub container_id: ContainerId,
    /// The recorded phase.
    pub phase: SandboxPhase,
    /// When it was created, in nanoseconds since the Unix epoch.
    pub created_at: i64,
    /// The CRI runtime handler it was asked for.
    pub runtime_handler: String,
    /// kubelet's config, as given.
    pub config: PodSandboxConfig,
    /// Its IP addresses, the primary one first.
    pub ips: Vec<String>,
    /// The name of the backend that runs it (and its containers), chosen before the
    /// backend was asked to run it; handed to the composite at start-up so a
    /// restarted berth routes every call to the same backend. Empty in records of
    /// an older berth until `Store::open` migrates them.
    #[serde(default)]
    pub backend: String,
}

impl SandboxRecord {
    /// The name that is unique among sandboxes: `name_namespace_uid_attempt`, as
    /// containerd reserves it.
    pub fn name(&self) -> String {
        Self::name_of(&self.config)
    }

    /// The unique name of a sandbox made from `config`.
    pub fn name_of(config: &PodSandboxConfig) -> String {
        let m = config.metadata.clone().unwrap_or_default();
        format!("{}_{}_{}_{}", m.name, m.namespace, m.uid, m.attempt)
    }
}

/// A container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// The CRI id (64 hex characters).
    pub id: String,
    /// The CRI id of its sandbox.
    pub sandbox_id: String,
    /// Its ContainerId.
    pub container_id: ContainerId,
    /// The recorded phase.
    pub phase: ContainerPhase,
    /// When it was created, in nanoseconds since the Unix epoch.
    pub created_at: i64,
    /// kubelet's config, as given.
    pub config: ContainerConfig,
    /// The image's id (`sha256:…`).
    pub image_id: String,
    /// The image's first repo tag, if it has one.
    pub image_tag: Option<String>,
    /// The image's first repo digest, if it has one.
    pub image_digest: Option<String>,
    /// The CRI log file, if kubelet asked for one.
    pub log_path: Option<PathBuf>,
    /// The resources last applied (at create, then by `UpdateContainerResources`).
    pub resources: Option<LinuxContainerResources>,
}

impl ContainerRecord {
    /// The name that is unique among the containers of one sandbox: `name_attempt`.
    pub fn name(&self) -> String {
        Self::name_of(&self.config)
    }

    /// The name, unique within its sandbox, of a container made from `config`.
    pub fn name_of(config: &ContainerConfig) -> String {
        let m = config.metadata.clone().unwrap_or_default();
        format!("{}_{}", m.name, m.attempt)
    }
}
