//! Where the youki backend keeps things, and the names it derives from ContainerIds.
//!
//! ```text
//! <state_dir>/youki/                 persistent (survives reboots; on disk)
//!   pods/<pod>/pod.json              the pod record, written before each step (intent first)
//!   pods/<pod>/etc/                  the pod's hostname, hosts, resolv.conf
//!   containers/<ctr>/container.json  the container record, intent first
//!   containers/<ctr>/exit.json       its exit, written by the supervisor before it reports it
//!   containers/<ctr>/bundle/         config.json for libcontainer
//!   containers/<ctr>/rootfs/         overlay upper/ and work/ (the writable layer), merged/
//!   containers/<ctr>/cgroupfs/       skeleton of its /sys/fs/cgroup (cgroup v1 hosts)
//! <run_dir>/youki/                   runtime only (tmpfs: gone with the processes at reboot)
//!   pods/<pod>/shim.sock             the supervisor's socket; shim.log, shim.pid
//!   pods/<pod>/shm/                  the pod's /dev/shm (a tmpfs)
//!   libcontainer/<ctr>/              libcontainer's state (state.json, notify socket)
//! ```
//! `<pod>` and `<ctr>` are [`key`]s of the ContainerIds.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::id::ContainerId;

/// The longest key, so paths stay readable (and far from file-name limits).
const MAX_KEY: usize = 48;

/// The directory, libcontainer and CNI name of `id`: its display form when that is
/// made of the characters both accept (`[A-Za-z0-9_.-]`, starting with a letter or
/// digit) and is short enough; else a readable prefix with the other characters
/// replaced by `_`, a `.`, and 16 hex digits of the display form's hash (so two ids
/// never share a key).
pub fn key(id: &ContainerId) -> String {
    let display = id.to_string();
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    let starts_well = display.starts_with(|c: char| c.is_ascii_alphanumeric());
    if display.len() <= MAX_KEY && starts_well && display.chars().all(valid) {
        return display;
    }
    let hash = hex::encode(Sha256::digest(display.as_bytes()));
    let lead = if starts_well { "" } else { "x" };
    let prefix: String = lead
        .chars()
        .chain(display.chars().map(|c| if valid(c) { c } else { '_' }))
        .take(MAX_KEY - 17)
        .collect();
    format!("{prefix}.{}", &hash[..16])
}

/// The backend's directories.
#[derive(Debug, Clone)]
pub struct Layout {
    state: PathBuf,
    run: PathBuf,
}

impl Layout {
    /// The layout under `<state_dir>/youki` and `<run_dir>/youki`; `InvalidSpec` when
    /// either is relative.
    pub fn new(state_dir: &Path, run_dir: &Path) -> Result<Layout> {
        if !state_dir.is_absolute() || !run_dir.is_absolute() {
            return Err(Error::InvalidSpec(format!(
                "youki: state_dir ({}) and run_dir ({}) must be absolute",
                state_dir.display(),
                run_dir.display()
            )));
        }
        Ok(Layout {
            state: state_dir.join("youki"),
            run: run_dir.join("youki"),
        })
    }

    /// Directory of every pod's persistent files.
    pub fn pods(&self) -> PathBuf {
        self.state.join("pods")
    }

    /// Directory of every container's persistent files.
    pub fn containers(&self) -> PathBuf {
        self.state.join("containers")
    }

    /// A pod's persistent directory.
    pub fn pod(&self, key: &str) -> PathBuf {
        self.pods().join(key)
    }

    /// A pod's record.
    pub fn pod_record(&self, key: &str) -> PathBuf {
        self.pod(key).join("pod.json")
    }

    /// A pod's `/etc` files.
    pub fn pod_etc(&self, key: &str) -> PathBuf {
        self.pod(key).join("etc")
    }

    /// Directory of every pod's runtime directory.
    pub fn pods_run(&self) -> PathBuf {
        self.run.join("pods")
    }

    /// A pod's runtime directory: the supervisor's socket, log and pid file.
    pub fn pod_run(&self, key: &str) -> PathBuf {
        self.pods_run().join(key)
    }

    /// The supervisor's socket.
    pub fn socket(&self, key: &str) -> PathBuf {
        self.pod_run(key).join("shim.sock")
    }

    /// The pod's shared `/dev/shm`.
    pub fn pod_shm(&self, key: &str) -> PathBuf {
        self.pod_run(key).join("shm")
    }

    /// A container's persistent directory.
    pub fn container(&self, key: &str) -> PathBuf {
        self.containers().join(key)
    }

    /// A container's record.
    pub fn container_record(&self, key: &str) -> PathBuf {
        self.container(key).join("container.json")
    }

    /// A container's exit record.
    pub fn exit_record(&self, key: &str) -> PathBuf {
        self.container(key).join("exit.json")
    }

    /// A container's bundle (`config.json`).
    pub fn bundle(&self, key: &str) -> PathBuf {
        self.container(key).join("bundle")
    }

    /// A container's overlay directories (`upper`, `work`, `merged`).
    pub fn rootfs(&self, key: &str) -> PathBuf {
        self.container(key).join("rootfs")
    }

    /// The skeleton of a container's `/sys/fs/cgroup` on a cgroup v1 host.
    pub fn cgroupfs(&self, key: &str) -> PathBuf {
        self.container(key).join("cgroupfs")
    }

    /// libcontainer's state root.
    pub fn libcontainer(&self) -> PathBuf {
        self.run.join("libcontainer")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(service: &str, role: &str, node: &str) -> ContainerId {
        ContainerId::new(service, role, 0, node).unwrap()
    }

    #[test]
    fn a_plain_id_is_its_own_key() {
        let id = id("web.default", "app", "node-1");
        assert_eq!(key(&id), "web.default-app-0-on-node-1");
    }

    #[test]
    fn invalid_characters_are_replaced_and_hashed() {
        let a = key(&id("web.default", "app", "node:1"));
        let b = key(&id("web.default", "app", "node_1"));
        assert!(a.starts_with("web.default-app-0-on-node_1."), "{a}");
        assert_eq!(a.len(), "web.default-app-0-on-node_1.".len() + 16);
        assert_ne!(
            a, b,
            "a replaced character must not collide with the real one"
        );
    }

    #[test]
    fn long_ids_are_cut_to_the_limit_and_stay_distinct() {
        let long = "a".repeat(200);
        let a = key(&id(&long, "app", "n"));
        let b = key(&id(&long, "app", "m"));
        assert_eq!(a.len(), MAX_KEY);
        assert_ne!(a, b);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)));
    }

    #[test]
    fn relative_dirs_are_refused() {
        assert!(Layout::new(Path::new("state"), Path::new("/run")).is_err());
        assert!(Layout::new(Path::new("/var/lib/berth"), Path::new("run")).is_err());
        assert!(Layout::new(Path::new("/var/lib/berth"), Path::new("/run/berth")).is_ok());
    }
}
