//! The cgroups berth's containers live in. libcontainer picks the hierarchy with
//! libcgroups' `get_cgroup_setup`: on a legacy or hybrid host (this one: v1 controllers
//! plus an empty cgroup2 mount) it uses the v1 hierarchies only, on a unified host v2.
//! [`Hierarchy::detect`] makes the same choice so stats, OOM counters and removal look
//! where the containers really are.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libcgroups::common::{CgroupConfig, CgroupManager, CgroupSetup, ControllerOpt};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// Where a cgroupfs path lives on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// cgroup v1: one mount per controller (or group of co-mounted controllers).
    V1 {
        /// Controller name → its mount point (`memory` → `/sys/fs/cgroup/memory`).
        mounts: Vec<(String, PathBuf)>,
    },
    /// cgroup v2: one tree.
    V2 {
        /// Its mount point.
        root: PathBuf,
    },
}

impl Hierarchy {
    /// The hierarchy libcontainer uses on this host.
    pub fn detect() -> Result<Hierarchy> {
        let setup = libcgroups::common::get_cgroup_setup()
            .map_err(|e| Error::internal("youki", "detecting the cgroup setup", e))?;
        match setup {
            CgroupSetup::Unified => Ok(Hierarchy::V2 {
                root: PathBuf::from(libcgroups::common::DEFAULT_CGROUP_ROOT),
            }),
            CgroupSetup::Legacy | CgroupSetup::Hybrid => {
                let points = libcgroups::v1::util::list_supported_mount_points()
                    .map_err(|e| Error::internal("youki", "listing cgroup v1 mounts", e))?;
                let mut mounts: Vec<(String, PathBuf)> = points
                    .into_iter()
                    .map(|(c, p)| (c.to_string(), p))
                    .collect();
                mounts.sort();
                Ok(Hierarchy::V1 { mounts })
            }
        }
    }

    /// The directory of `cgroup` for `controller` (v1), or in the single tree (v2).
    pub fn dir(&self, controller: &str, cgroup: &str) -> Option<PathBuf> {
        let rel = cgroup.trim_start_matches('/');
        match self {
            Hierarchy::V1 { mounts } => mounts
                .iter()
                .find(|(c, _)| c == controller)
                .map(|(_, m)| m.join(rel)),
            Hierarchy::V2 { root } => Some(root.join(rel)),
        }
    }

    /// Every directory of `cgroup`, once each (co-mounted v1 controllers share one).
    pub fn dirs(&self, cgroup: &str) -> Vec<PathBuf> {
        let rel = cgroup.trim_start_matches('/');
        let set: BTreeSet<PathBuf> = match self {
            Hierarchy::V1 { mounts } => mounts.iter().map(|(_, m)| m.join(rel)).collect(),
            Hierarchy::V2 { root } => [root.join(rel)].into(),
        };
        set.into_iter().collect()
    }

    /// True when the cgroup exists in any hierarchy.
    pub fn exists(&self, cgroup: &str) -> bool {
        self.dirs(cgroup).iter().any(|d| d.is_dir())
    }

    /// The processes in `cgroup` and every cgroup below it.
    pub fn procs(&self, cgroup: &str) -> Vec<Pid> {
        let mut pids = BTreeSet::new();
        for dir in self.dirs(cgroup) {
            for d in subtree(&dir) {
                pids.extend(read_procs(&d));
            }
        }
        pids.into_iter().map(Pid::from_raw).collect()
    }

    /// SIGKILLs every process in `cgroup` (and below) until none is left or `patience`
    /// runs out; true when it is empty.
    pub fn kill_all(&self, cgroup: &str, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        loop {
            let pids = self.procs(cgroup);
            if pids.is_empty() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            for pid in pids {
                let _ = kill(pid, Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills everything in `cgroup` and removes it and every cgroup below it, in every
    /// hierarchy. Removing a missing cgroup succeeds.
    pub fn remove(&self, cgroup: &str) -> Result<()> {
        if cgroup.trim_matches('/').is_empty() {
            return Err(Error::backend(
                "youki",
                "refusing to remove the root cgroup",
            ));
        }
        self.kill_all(cgroup, Duration::from_secs(5));
        let mut failures = Vec::new();
        let mut dirs = self.dirs(cgroup);
        if let Hierarchy::V1 { mounts } = self {
            // runc (containerd's pods) also makes the cgroup in the hierarchies
            // libcontainer leaves alone: name=systemd and a hybrid host's cgroup2.
            let rel = cgroup.trim_start_matches('/');
            dirs.extend(other_cgroup_mounts(mounts).into_iter().map(|m| m.join(rel)));
        }
        for dir in dirs {
            // Deepest first: a cgroup with children cannot be removed.
            for d in subtree(&dir).into_iter().rev() {
                if let Err(e) = rmdir_retry(&d) {
                    failures.push(Error::io(d.display().to_string(), e));
                }
            }
        }
        Error::combine(format!("removing cgroup {cgroup}"), failures)
    }

    /// How many processes of `cgroup` the kernel's OOM killer has killed.
    pub fn oom_kills(&self, cgroup: &str) -> u64 {
        let (file, key) = match self {
            Hierarchy::V1 { .. } => ("memory.oom_control", "oom_kill"),
            Hierarchy::V2 { .. } => ("memory.events", "oom_kill"),
        };
        self.dir("memory", cgroup)
            .and_then(|d| keyed_value(&d.join(file), key))
            .unwrap_or(0)
    }

    /// Applies `resources` to the existing `cgroup` (UpdateContainerResources). Writes
    /// cgroup files from this process; nothing forks.
    pub fn update(
        &self,
        cgroup: &str,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        let manager = libcgroups::common::create_cgroup_manager(CgroupConfig {
            cgroup_path: PathBuf::from(cgroup),
            systemd_cgroup: false,
            container_name: String::new(),
        })
        .map_err(|e| Error::internal("youki", format!("cgroup {cgroup}"), e))?;
        manager
            .apply(&ControllerOpt {
                resources,
                disable_oom_killer: false,
                oom_score_adj: None,
                freezer_state: None,
            })
            .map_err(|e| Error::InvalidSpec(format!("updating cgroup {cgroup}: {e}")))
    }
}

/// `dir` and every directory below it, parents before children; empty when `dir` is
/// missing.
fn subtree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if !dir.is_dir() {
        return out;
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(entries) = fs::read_dir(&d) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
        out.push(d);
    }
    // `stack` order is depth-first; sort by depth so parents come first.
    out.sort_by_key(|p| p.components().count());
    out
}

/// The cgroup mounts (v1 or v2) that are not among the controllers' `mounts`.
fn other_cgroup_mounts(mounts: &[(String, PathBuf)]) -> Vec<PathBuf> {
    let table = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut found: Vec<PathBuf> = table
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
            matches!(kind, "cgroup" | "cgroup2").then(|| PathBuf::from(point))
        })
        .filter(|point| !mounts.iter().any(|(_, m)| m == point))
        .collect();
    found.sort();
    found.dedup();
    found
}

fn read_procs(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// rmdir, retried while the kernel still tears down the last processes (EBUSY).
fn rmdir_retry(dir: &Path) -> io::Result<()> {
    let mut tries = 0;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(_) if tries < 50 => {
                tries += 1;
                for pid in read_procs(dir) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The value of `key` in a flat-keyed cgroup file (`key value` lines).
pub fn keyed_value(path: &Path, key: &str) -> Option<u64> {
    parse_keyed(&fs::read_to_string(path).ok()?, key)
}

/// The value of `key` in the text of a flat-keyed cgroup file.
pub fn parse_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// A single-number cgroup file.
pub fn read_number(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_files_are_parsed_by_exact_key() {
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_keyed(text, "oom_kill"), Some(3));
        assert_eq!(parse_keyed(text, "under_oom"), Some(0));
        assert_eq!(parse_keyed(text, "oom"), None);
    }

    #[test]
    fn v1_dirs_are_per_mount_and_deduplicated() {
        let h = Hierarchy::V1 {
            mounts: vec![
                ("cpu".into(), "/sys/fs/cgroup/cpu,cpuacct".into()),
                ("cpuacct".into(), "/sys/fs/cgroup/cpu,cpuacct".into()),
                ("memory".into(), "/sys/fs/cgroup/memory".into()),
            ],
        };
        assert_eq!(
            h.dirs("/berth/pod/ctr"),
            vec![
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/berth/pod/ctr"),
                PathBuf::from("/sys/fs/cgroup/memory/berth/pod/ctr"),
            ]
        );
        assert_eq!(
            h.dir("memory", "/berth/x"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/berth/x"))
        );
        assert_eq!(h.dir("pids", "/berth/x"), None);
    }

    #[test]
    fn the_root_cgroup_is_never_removed() {
        let h = Hierarchy::V2 {
            root: "/nonexistent".into(),
        };
        assert!(h.remove("/").is_err());
        assert!(
            h.remove("/berth/gone").is_ok(),
            "a missing cgroup is removed already"
        );
    }

    #[test]
    fn subtree_lists_parents_first() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b/c")).unwrap();
        fs::create_dir_all(dir.path().join("a/d")).unwrap();
        let got: Vec<usize> = subtree(&dir.path().join("a"))
            .iter()
            .map(|p| p.components().count())
            .collect();
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(got, sorted);
        assert_eq!(got.len(), 4);
    }
}
