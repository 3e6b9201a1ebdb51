//! Container values exchanged between the agent and the backends.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::NamespaceOptions;

/// How the image's groups combine with requested supplemental groups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SupplementalGroupsPolicy {
    /// The user's groups from the image's `/etc/group` plus the requested ones.
    #[default]
    Merge,
    /// Only the requested groups (and the primary group).
    Strict,
}

/// Who the container's process runs as, before the image's `/etc/passwd` and
/// `/etc/group` are read. The backend resolves it against the container's rootfs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRequest {
    /// A numeric user (CRI `run_as_user`, or the image's numeric `User`).
    pub uid: Option<u32>,
    /// A user name (CRI `run_as_username`, or the image's named `User`).
    pub username: Option<String>,
    /// A numeric primary group (CRI `run_as_group`, or the image's `User` `:gid`).
    pub gid: Option<u32>,
    /// A group name (the image's `User` `:group`).
    pub group: Option<String>,
    /// Requested supplemental groups.
    pub supplemental_groups: Vec<u32>,
    /// How they combine with the image's groups.
    pub policy: SupplementalGroupsPolicy,
}

/// The identity a container's process really runs with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedUser {
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Supplemental gids.
    pub supplemental_groups: Vec<u32>,
}

/// What a backend needs to create a container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// The image as the request named it.
    pub image: String,
    /// The image's id (`sha256:…`), resolved by the agent.
    pub image_id: String,
    /// The OCI runtime spec, complete except what only the backend knows: `root.path`,
    /// the `path` of namespaces shared with the pod (see `namespaces`),
    /// `linux.cgroupsPath`, `process.user` (see `user`), the checks and symlink
    /// resolution of request bind mounts, and the pod's `/dev/shm`, `/etc/hosts`,
    /// `/etc/hostname`, `/etc/resolv.conf` (the agent's `spec` module documents the
    /// exact contract).
    pub oci: oci_spec::runtime::Spec,
    /// Who the process runs as, resolved by the backend against the rootfs.
    pub user: UserRequest,
    /// The CRI log file (absolute), if kubelet asked for one.
    pub log_path: Option<PathBuf>,
    /// Keep stdin open for attach.
    pub stdin: bool,
    /// Close stdin after the first attach ends.
    pub stdin_once: bool,
    /// Run with a terminal.
    pub tty: bool,
    /// The signal `StopContainer` sends first (the image's `StopSignal`), e.g. `SIGQUIT`.
    pub stop_signal: Option<String>,
    /// Image volumes (KEP-4639): images mounted read-only into the container.
    #[serde(default)]
    pub image_volumes: Vec<ImageVolume>,
    /// The container's namespaces: network, IPC and user are its pod's; `pid` says
    /// whether the spec's PID namespace entry is the pod's (`Pod`), another container's
    /// (`Target`, `target_id`), or a new one (`Container`).
    pub namespaces: NamespaceOptions,
}

/// An image mounted read-only into a container: its files (or the directory
/// `sub_path` of them) at `destination`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageVolume {
    /// Where in the container (absolute, clean).
    pub destination: PathBuf,
    /// The image's id (`sha256:…`), resolved by the agent: the image is present.
    pub image_id: String,
    /// A path inside the image (relative, clean; empty for the whole image).
    pub sub_path: PathBuf,
}

/// The lifecycle state of a container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    /// Created, not started.
    #[default]
    Created,
    /// Running.
    Running,
    /// Exited.
    Exited,
    /// The backend lost track of it.
    Unknown,
}

/// A container as its backend sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    /// The state.
    pub state: ContainerState,
    /// The host pid of its init process while it runs.
    pub pid: Option<u32>,
    /// When it started.
    pub started_at: Option<SystemTime>,
    /// When it exited.
    pub finished_at: Option<SystemTime>,
    /// Its exit code once exited (128 + signal for a signal).
    pub exit_code: i32,
    /// `Completed`, `Error` or `OOMKilled` once exited.
    pub reason: String,
    /// More detail, if any.
    pub message: String,
    /// The identity it runs with, once resolved.
    pub user: Option<ResolvedUser>,
}

/// Where a pod sandbox or container lives on the host, as far as its backend knows
/// (verbose `PodSandboxStatus`/`ContainerStatus`): a field the backend cannot tell
/// is `None`, never a guess.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inspection {
    /// The pid of the process that supervises it (youki: its pod's supervisor) while
    /// that runs.
    pub supervisor_pid: Option<u32>,
    /// Its cgroup, as `/proc/<pid>/cgroup` names it (`/berth/…`).
    pub cgroup_path: Option<String>,
    /// The network namespace it is in, when the pod has its own.
    pub netns_path: Option<PathBuf>,
}

/// A command to run in a running container, waiting for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecRequest {
    /// The command and its arguments.
    pub cmd: Vec<String>,
    /// Kill the command (not the container) after this long.
    pub timeout: Option<Duration>,
}

/// What a finished exec produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOutput {
    /// Its stdout.
    pub stdout: Vec<u8>,
    /// Its stderr.
    pub stderr: Vec<u8>,
    /// Its exit code.
    pub exit_code: i32,
}

/// Memory numbers of a container or a whole pod (its cgroup).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryStats {
    /// Working set (usage minus inactive file pages), in bytes.
    pub working_set: u64,
    /// Usage, in bytes.
    pub usage: u64,
    /// Anonymous and swap cache memory, in bytes.
    pub rss: u64,
    /// Page faults, cumulative.
    pub page_faults: u64,
    /// Major page faults, cumulative.
    pub major_page_faults: u64,
}

/// More of a cgroup's numbers, for kubelet's CRI metrics (cAdvisor's names in the
/// agent); zeros where the host has none (no swap accounting, cgroup v2's failcnt).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UsageDetail {
    /// CPU time in user mode, in nanoseconds.
    pub cpu_user_ns: u64,
    /// CPU time in kernel mode, in nanoseconds.
    pub cpu_system_ns: u64,
    /// CFS enforcement periods elapsed.
    pub cfs_periods: u64,
    /// Periods in which the cgroup was throttled.
    pub cfs_throttled_periods: u64,
    /// Time throttled, in nanoseconds.
    pub cfs_throttled_ns: u64,
    /// Page cache, in bytes.
    pub memory_cache: u64,
    /// Mapped files, in bytes.
    pub memory_mapped_file: u64,
    /// Times the memory limit was hit.
    pub memory_failcnt: u64,
    /// Kernel memory, in bytes.
    pub memory_kernel: u64,
    /// Highest memory usage seen, in bytes.
    pub memory_max_usage: u64,
    /// Swap used, in bytes.
    pub memory_swap: u64,
    /// Processes the OOM killer killed.
    pub oom_events: u64,
    /// Threads (tasks of the cgroup).
    pub threads: u64,
    /// The most tasks allowed (0: no limit).
    pub threads_max: u64,
    /// Open file descriptors of its processes.
    pub file_descriptors: u64,
    /// Of those, sockets.
    pub sockets: u64,
    /// The writable layer's file system: size in bytes.
    pub fs_limit_bytes: u64,
    /// Its inodes.
    pub fs_inodes_total: u64,
    /// Its free inodes.
    pub fs_inodes_free: u64,
}

/// Resource usage of one container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStats {
    /// When the numbers were read.
    pub timestamp: SystemTime,
    /// CPU time used, cumulative, in nanoseconds.
    pub cpu_usage_ns: u64,
    /// Memory.
    pub memory: MemoryStats,
    /// The writable layer's directory.
    pub writable_layer: PathBuf,
    /// Bytes used by the writable layer.
    pub writable_layer_bytes: u64,
    /// Inodes used by the writable layer.
    pub writable_layer_inodes: u64,
    /// The rest of its cgroup's and file system's numbers.
    #[serde(default)]
    pub detail: UsageDetail,
}
