//! The host side of tearing pods and containers down: CNI DEL, namespace pins,
//! `/dev/shm` and rootfs unmounts, cgroups. Behind a trait, as youki's own `Syscall`,
//! so the orchestration that drives these steps can be unit-tested without root, with
//! faults injected; [`Machine`] is the real host.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::Result;
use crate::network::{Network, NsKind, PodNetwork};

use super::cgroups::Hierarchy;
use super::pod::unmount_shm;
use super::rootfs;

/// What teardown asks of the host. Every call is idempotent: what is gone already
/// succeeds.
#[async_trait]
pub trait Host: Send + Sync {
    /// CNI DEL of the pod `key` ([`Network::detach`]).
    async fn detach(&self, key: &str, netns: Option<&Path>, pod: &PodNetwork) -> Result<()>;
    /// Removes the pod's `kind` namespace pin ([`Network::unpin`]). Blocking.
    fn unpin(&self, kind: NsKind, key: &str) -> Result<()>;
    /// Unmounts the pod's `/dev/shm` at `dir` and removes the directory. Blocking.
    fn unmount_shm(&self, dir: &Path) -> Result<()>;
    /// Unmounts the rootfs at `dir` and removes its directories. Blocking.
    fn remove_rootfs(&self, dir: &Path) -> Result<()>;
    /// SIGKILLs every process of `cgroup`; false when some outlive `patience`. Blocking.
    fn kill_cgroup(&self, cgroup: &str, patience: Duration) -> bool;
    /// Removes `cgroup` (empty by now). Blocking.
    fn remove_cgroup(&self, cgroup: &str) -> Result<()>;
}

/// The real host: the pod network and the cgroup hierarchy.
pub struct Machine {
    network: Arc<Network>,
    hierarchy: Hierarchy,
}

impl Machine {
    /// The host of `network` and `hierarchy`.
    pub fn new(network: Arc<Network>, hierarchy: Hierarchy) -> Machine {
        Machine { network, hierarchy }
    }
}

#[async_trait]
impl Host for Machine {
    async fn detach(&self, key: &str, netns: Option<&Path>, pod: &PodNetwork) -> Result<()> {
        self.network.detach(key, netns, pod).await
    }

    fn unpin(&self, kind: NsKind, key: &str) -> Result<()> {
        self.network.unpin(kind, key)
    }

    fn unmount_shm(&self, dir: &Path) -> Result<()> {
        unmount_shm(dir)
    }

    fn remove_rootfs(&self, dir: &Path) -> Result<()> {
        rootfs::remove(dir)
    }

    fn kill_cgroup(&self, cgroup: &str, patience: Duration) -> bool {
        self.hierarchy.kill_all(cgroup, patience)
    }

    fn remove_cgroup(&self, cgroup: &str) -> Result<()> {
        self.hierarchy.remove(cgroup)
    }
}
