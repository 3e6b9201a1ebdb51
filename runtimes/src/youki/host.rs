//! The host side of making and tearing down pods and containers: namespace pins, CNI
//! ADD and DEL, the pod's hostname, sysctls and `/dev/shm`, rootfs overlay mounts and
//! their ownership, cgroups. Everything here needs root. Behind a trait, as youki's own
//! `Syscall`, so the orchestration that drives these steps can be unit-tested without
//! root, with faults injected; [`Machine`] is the real host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::network::{in_namespace, Attachment, Network, NsKind, PodNetwork};
use crate::types::IdMapping;

use super::cgroups::Hierarchy;
use super::pod::{mount_shm, pin_of, sysctl, unmount_shm};
use super::records::PodRecord;
use super::{remap, rootfs};

/// What making and tearing down ask of the host. Every teardown call is idempotent:
/// what is gone already succeeds. "Blocking" calls run on tokio's blocking pool.
#[async_trait]
pub trait Host: Send + Sync {
    /// Pins a new namespace of `kind` for the pod `key` ([`Network::pin`]). Blocking.
    fn pin(&self, kind: NsKind, key: &str) -> Result<()>;
    /// Pins a user namespace mapped with `uids` and `gids` and the `inner` namespaces
    /// made in it ([`Network::pin_with_userns`]). Blocking.
    fn pin_with_userns(
        &self,
        key: &str,
        uids: &[IdMapping],
        gids: &[IdMapping],
        inner: &[NsKind],
    ) -> Result<()>;
    /// Sets `hostname` in the pinned UTS namespace `uts`. Blocking.
    fn set_hostname(&self, uts: &Path, hostname: &str) -> Result<()>;
    /// Mounts the pod's `/dev/shm` at `dir`, owned by `owner` (uid, gid) when given.
    /// Blocking.
    fn mount_shm(&self, dir: &Path, owner: Option<(u32, u32)>) -> Result<()>;
    /// CNI ADD of the pod `key` into `netns` ([`Network::attach`]).
    async fn attach(&self, key: &str, netns: &Path, pod: &PodNetwork) -> Result<Attachment>;
    /// Applies the pod's `sysctls` in its pinned namespaces. Blocking.
    fn apply_sysctls(&self, sysctls: &BTreeMap<String, String>, pod: &PodRecord) -> Result<()>;
    /// Mounts the overlay of `layers` (topmost first) at `<dir>/merged`; returns the
    /// mount point. Blocking.
    fn mount_rootfs(&self, layers: &[PathBuf], dir: &Path) -> Result<PathBuf>;
    /// Mounts the image of `layers` read-only as the `n`th image volume of the rootfs
    /// at `dir`; returns the host path to bind (see [`rootfs::mount_image_volume`]).
    /// [`Host::remove_rootfs`] unmounts it. Blocking.
    fn mount_image_volume(
        &self,
        layers: &[PathBuf],
        dir: &Path,
        n: usize,
        sub_path: &Path,
    ) -> Result<PathBuf>;
    /// Shifts the owners of the files under `rootfs` into the pod's user namespace.
    /// Blocking.
    fn remap_owners(&self, rootfs: &Path, uids: &[IdMapping], gids: &[IdMapping]) -> Result<()>;
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
    fn pin(&self, kind: NsKind, key: &str) -> Result<()> {
        self.network.pin(kind, key).map(drop)
    }

    fn pin_with_userns(
        &self,
        key: &str,
        uids: &[IdMapping],
        gids: &[IdMapping],
        inner: &[NsKind],
    ) -> Result<()> {
        self.network
            .pin_with_userns(key, uids, gids, inner)
            .map(drop)
    }

    fn set_hostname(&self, uts: &Path, hostname: &str) -> Result<()> {
        let name = hostname.to_string();
        in_namespace(NsKind::Uts, uts, move || nix::unistd::sethostname(&name))?
            .map_err(|e| Error::io(format!("setting the pod's hostname {hostname}"), e.into()))
    }

    fn mount_shm(&self, dir: &Path, owner: Option<(u32, u32)>) -> Result<()> {
        mount_shm(dir, owner)
    }

    async fn attach(&self, key: &str, netns: &Path, pod: &PodNetwork) -> Result<Attachment> {
        self.network.attach(key, netns, pod).await
    }

    fn apply_sysctls(&self, sysctls: &BTreeMap<String, String>, pod: &PodRecord) -> Result<()> {
        sysctl::apply(sysctls, |kind| pin_of(pod, kind))
    }

    fn mount_rootfs(&self, layers: &[PathBuf], dir: &Path) -> Result<PathBuf> {
        rootfs::mount_overlay(layers, dir)
    }

    fn mount_image_volume(
        &self,
        layers: &[PathBuf],
        dir: &Path,
        n: usize,
        sub_path: &Path,
    ) -> Result<PathBuf> {
        rootfs::mount_image_volume(layers, dir, n, sub_path)
    }

    fn remap_owners(&self, rootfs: &Path, uids: &[IdMapping], gids: &[IdMapping]) -> Result<()> {
        remap::remap_owners(rootfs, uids, gids)
    }

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
