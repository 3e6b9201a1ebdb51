//! A fake [`Host`]: keeps in memory what it was asked (pins, attachments, mounts) and
//! fails where told. Nothing is mounted, no namespace is made, no CNI plugin runs.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::network::{Attachment, NsKind, PodNetwork};
use crate::types::IdMapping;

use super::super::host::Host;
use super::super::records::PodRecord;
use super::super::rootfs;

/// A host that keeps what it was asked in memory, and fails where told.
#[derive(Default)]
pub struct FakeHost {
    /// Pods (by key) attached to the network and not detached yet.
    pub attached: Mutex<BTreeSet<String>>,
    /// Namespace pins (`<kind> <key>`, e.g. `Net web-…`) made and not removed yet.
    pub pins: Mutex<BTreeSet<String>>,
    /// Rootfs directories mounted and not removed yet.
    pub mounted: Mutex<BTreeSet<PathBuf>>,
    /// Cgroups removed, in order.
    pub removed_cgroups: Mutex<Vec<String>>,
    /// Every call, in order (`detach <key>`, `remove_rootfs <dir>`, …).
    pub calls: Mutex<Vec<String>>,
    /// How many of the next CNI ADDs fail.
    pub failing_attaches: Mutex<usize>,
    /// How many of the next CNI DELs fail.
    pub failing_detaches: Mutex<usize>,
    /// Rootfs directories whose next unmount fails.
    pub failing_unmounts: Mutex<Vec<PathBuf>>,
}

impl FakeHost {
    fn log(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }

    /// The calls made so far that start with `prefix`.
    pub fn calls_to(&self, prefix: &str) -> Vec<String> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|c| c.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Takes one of the faults `counter` holds: true when this call is to fail.
    fn take(counter: &Mutex<usize>) -> bool {
        let mut left = counter.lock().unwrap();
        let fail = *left > 0;
        *left = left.saturating_sub(1);
        fail
    }
}

fn fault(what: String) -> Error {
    Error::io(what, std::io::Error::other("injected fault"))
}

fn remove_dir_all(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("removing {}", dir.display()), e))
        }
        _ => Ok(()),
    }
}

fn create_dir_all(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))
}

#[async_trait]
impl Host for FakeHost {
    fn pin(&self, kind: NsKind, key: &str) -> Result<()> {
        self.log(format!("pin {kind:?} {key}"));
        self.pins.lock().unwrap().insert(format!("{kind:?} {key}"));
        Ok(())
    }

    fn pin_with_userns(
        &self,
        key: &str,
        _uids: &[IdMapping],
        _gids: &[IdMapping],
        inner: &[NsKind],
    ) -> Result<()> {
        self.log(format!("pin_with_userns {key}"));
        let mut pins = self.pins.lock().unwrap();
        for kind in inner.iter().chain([&NsKind::User]) {
            pins.insert(format!("{kind:?} {key}"));
        }
        Ok(())
    }

    fn set_hostname(&self, uts: &Path, hostname: &str) -> Result<()> {
        self.log(format!("set_hostname {} {hostname}", uts.display()));
        Ok(())
    }

    fn mount_shm(&self, dir: &Path, _owner: Option<(u32, u32)>) -> Result<()> {
        self.log(format!("mount_shm {}", dir.display()));
        create_dir_all(dir)
    }

    async fn attach(&self, key: &str, _netns: &Path, _pod: &PodNetwork) -> Result<Attachment> {
        self.log(format!("attach {key}"));
        if Self::take(&self.failing_attaches) {
            return Err(fault(format!("CNI ADD of pod {key}")));
        }
        self.attached.lock().unwrap().insert(key.to_string());
        Ok(Attachment {
            ips: vec!["10.85.0.2".into()],
            interface: "eth0".into(),
        })
    }

    fn apply_sysctls(&self, sysctls: &BTreeMap<String, String>, _pod: &PodRecord) -> Result<()> {
        if !sysctls.is_empty() {
            self.log(format!("apply_sysctls {sysctls:?}"));
        }
        Ok(())
    }

    fn mount_rootfs(&self, _layers: &[PathBuf], dir: &Path) -> Result<PathBuf> {
        self.log(format!("mount_rootfs {}", dir.display()));
        for d in [rootfs::upper(dir), dir.join("work"), rootfs::merged(dir)] {
            create_dir_all(&d)?;
        }
        self.mounted.lock().unwrap().insert(dir.to_path_buf());
        Ok(rootfs::merged(dir))
    }

    fn mount_image_volume(
        &self,
        _layers: &[PathBuf],
        dir: &Path,
        n: usize,
        sub_path: &Path,
    ) -> Result<PathBuf> {
        self.log(format!("mount_image_volume {} {n}", dir.display()));
        let target = dir.join("volumes").join(n.to_string()).join(sub_path);
        create_dir_all(&target)?;
        Ok(target)
    }

    fn remap_owners(&self, rootfs: &Path, _uids: &[IdMapping], _gids: &[IdMapping]) -> Result<()> {
        self.log(format!("remap_owners {}", rootfs.display()));
        Ok(())
    }

    async fn detach(&self, key: &str, _netns: Option<&Path>, _pod: &PodNetwork) -> Result<()> {
        self.log(format!("detach {key}"));
        if Self::take(&self.failing_detaches) {
            return Err(fault(format!("CNI DEL of pod {key}")));
        }
        self.attached.lock().unwrap().remove(key);
        Ok(())
    }

    fn unpin(&self, kind: NsKind, key: &str) -> Result<()> {
        self.log(format!("unpin {kind:?} {key}"));
        self.pins.lock().unwrap().remove(&format!("{kind:?} {key}"));
        Ok(())
    }

    fn unmount_shm(&self, dir: &Path) -> Result<()> {
        self.log(format!("unmount_shm {}", dir.display()));
        remove_dir_all(dir)
    }

    fn remove_rootfs(&self, dir: &Path) -> Result<()> {
        self.log(format!("remove_rootfs {}", dir.display()));
        let mut failing = self.failing_unmounts.lock().unwrap();
        if let Some(at) = failing.iter().position(|d| d == dir) {
            failing.remove(at);
            return Err(fault(format!("unmounting {}", dir.display())));
        }
        self.mounted.lock().unwrap().remove(dir);
        remove_dir_all(dir)
    }

    fn kill_cgroup(&self, cgroup: &str, _patience: Duration) -> bool {
        self.log(format!("kill_cgroup {cgroup}"));
        true
    }

    fn remove_cgroup(&self, cgroup: &str) -> Result<()> {
        self.log(format!("remove_cgroup {cgroup}"));
        self.removed_cgroups
            .lock()
            .unwrap()
            .push(cgroup.to_string());
        Ok(())
    }
}
