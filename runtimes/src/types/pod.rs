//! Pod sandbox values exchanged between the agent and the backends.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::MemoryStats;

/// Where a namespace comes from, with CRI's meaning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NamespaceMode {
    /// Shared by the pod's containers.
    #[default]
    Pod,
    /// The container's own.
    Container,
    /// The node's (host) namespace.
    Node,
    /// Another container's (`NamespaceOptions::target`).
    Target,
}

/// One range of a user namespace's id mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapping {
    /// First id on the host.
    pub host_id: u32,
    /// First id inside the namespace.
    pub container_id: u32,
    /// How many ids.
    pub length: u32,
}

impl IdMapping {
    /// `length` ids from `container_id` inside the namespace, from `host_id` outside.
    pub fn new(container_id: u32, host_id: u32, length: u32) -> IdMapping {
        IdMapping {
            host_id,
            container_id,
            length,
        }
    }
}

/// A user namespace request (`NamespaceOption.userns_options`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserNamespace {
    /// `Pod` for a pod-level user namespace, `Node` for none.
    pub mode: NamespaceMode,
    /// uid mappings.
    pub uids: Vec<IdMapping>,
    /// gid mappings.
    pub gids: Vec<IdMapping>,
}

/// Which namespaces a pod (or a container of it) shares, and with whom.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceOptions {
    /// Network namespace: `Pod` (its own, set up with CNI) or `Node` (host network).
    pub network: NamespaceMode,
    /// PID namespace: `Pod`, `Container`, `Node` or `Target`.
    pub pid: NamespaceMode,
    /// IPC namespace: `Pod` or `Node`.
    pub ipc: NamespaceMode,
    /// The CRI id of the container whose PID namespace `Target` means.
    pub target_id: Option<String>,
    /// The user namespace, when one is asked for.
    pub user: Option<UserNamespace>,
}

/// DNS settings for the pod's `/etc/resolv.conf`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfig {
    /// `nameserver` lines.
    pub servers: Vec<String>,
    /// The `search` line.
    pub searches: Vec<String>,
    /// The `options` line.
    pub options: Vec<String>,
}

/// A transport protocol of a port mapping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    /// TCP.
    #[default]
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

/// A hostPort mapping of the pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// The protocol.
    pub protocol: Protocol,
    /// The port inside the pod.
    pub container_port: u16,
    /// The port on the host; 0 means no host port.
    pub host_port: u16,
    /// The host address to bind; empty for every address.
    pub host_ip: String,
}

/// What a backend needs to know to run a pod sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Pod name (metadata).
    pub name: String,
    /// Pod namespace (metadata).
    pub namespace: String,
    /// Pod uid (metadata).
    pub uid: String,
    /// The pod's hostname; empty means the pod name.
    pub hostname: String,
    /// Where kubelet wants the pod's container logs (container log paths are relative to it).
    pub log_directory: Option<PathBuf>,
    /// DNS settings; `None` means the node's `/etc/resolv.conf`.
    pub dns: Option<DnsConfig>,
    /// hostPort mappings.
    pub port_mappings: Vec<PortMapping>,
    /// Namespace sharing.
    pub namespaces: NamespaceOptions,
    /// The cgroup parent kubelet chose (cgroupfs path), empty for berth's default.
    pub cgroup_parent: String,
    /// Namespaced sysctls to set in the pod (safe and unsafe ones alike).
    pub sysctls: BTreeMap<String, String>,
    /// True for a privileged pod.
    pub privileged: bool,
}

/// The lifecycle state of a pod sandbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    /// The sandbox is set up and its network is attached.
    #[default]
    Ready,
    /// Stopped, or broken.
    NotReady,
}

/// A pod sandbox as its backend sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxStatus {
    /// Ready or not.
    pub state: SandboxState,
    /// The pod's IP addresses, the primary one first; empty for host network.
    pub ips: Vec<String>,
    /// The pod's network namespace, if it has its own.
    pub netns_path: Option<PathBuf>,
}

/// Network counters of a pod's interface.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkStats {
    /// Interface name (`eth0`).
    pub interface: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Send errors.
    pub tx_errors: u64,
    /// Packets received.
    #[serde(default)]
    pub rx_packets: u64,
    /// Received packets dropped.
    #[serde(default)]
    pub rx_dropped: u64,
    /// Packets sent.
    #[serde(default)]
    pub tx_packets: u64,
    /// Packets to send dropped.
    #[serde(default)]
    pub tx_dropped: u64,
}

/// Resource usage of a whole pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxStats {
    /// When the numbers were read.
    pub timestamp: SystemTime,
    /// CPU time used, cumulative, in nanoseconds.
    pub cpu_usage_ns: u64,
    /// Memory of the whole pod.
    pub memory: MemoryStats,
    /// Processes in the pod.
    pub processes: u64,
    /// The pod interface's counters, when it has its own network.
    pub network: Option<NetworkStats>,
    /// The rest of its cgroup's numbers.
    #[serde(default)]
    pub detail: super::UsageDetail,
}
