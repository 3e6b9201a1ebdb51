//! Pod sandbox and container values exchanged between the agent and the backends.

use std::collections::BTreeMap;

/// What a backend needs to know to run a pod sandbox (grows with the pod verbs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxSpec {
    /// The CRI `runtime_handler`; empty for the node's default.
    pub runtime_handler: String,
    /// Pod annotations (`berth.dev/isolation` among them).
    pub annotations: BTreeMap<String, String>,
    /// Pod labels.
    pub labels: BTreeMap<String, String>,
    /// The OS the pod needs when its config says so (a `windows` section means
    /// `windows`); `None` when the config does not tell.
    pub os: Option<String>,
    /// The image the sandbox itself runs, if any (a pause image).
    pub image: Option<String>,
}

/// What a backend needs to know to create a container (grows with the container verbs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    /// The image reference or id the container runs.
    pub image: String,
}
