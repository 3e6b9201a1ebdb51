//! What the spec depends on outside the request: facts about this host, read once at
//! start-up ([`HostFacts::detect`]), and the few lookups a request needs at create time
//! (a Localhost seccomp profile, device nodes), behind [`HostLookup`] so the builder
//! itself stays pure and is unit-tested with a fake.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Facts about this host and agent the spec depends on.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// The agent's own `oom_score_adj`: lower requests are raised to it (no
    /// CAP_SYS_RESOURCE here, as containerd's `restrict_oom_score_adj`).
    pub oom_score_adj: i32,
    /// True when the kernel has AppArmor enabled.
    pub apparmor: bool,
    /// Where `localhost/<name>` seccomp profiles are looked up when relative.
    pub seccomp_profile_root: PathBuf,
    /// The node's hostname: `HOSTNAME` of containers in a host-network pod that names none.
    pub hostname: String,
    /// True on a pure cgroup v2 host: containers then get their own cgroup namespace.
    pub cgroup_unified: bool,
    /// True when the memory controller limits swap (`memory.memsw.*` on v1,
    /// `memory.swap.max` on v2); without it swap limits are left out, as containerd does.
    pub swap_controller: bool,
    /// True when the hugetlb controller is there; without it hugepage limits are left
    /// out (containerd's `tolerate_missing_hugetlb_controller`, its default).
    pub hugetlb_controller: bool,
    /// The capabilities the agent itself holds (its `CapEff` mask): no container can
    /// get more, so `ALL` and privileged mean these. `None` means every capability
    /// oci-spec knows.
    pub capabilities: Option<u64>,
}

/// Where kubelet keeps Localhost seccomp profiles.
pub const KUBELET_SECCOMP_ROOT: &str = "/var/lib/kubelet/seccomp";

impl HostFacts {
    /// Reads the facts from this host. Best effort: what cannot be read keeps its
    /// default (the conservative value), so start-up never fails here.
    pub fn detect() -> Self {
        let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
        let cgroup_unified = nix::sys::statfs::statfs("/sys/fs/cgroup")
            .map(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
            .unwrap_or(false);
        let swap_controller = if cgroup_unified {
            cgroup2_own_path(&read("/proc/self/cgroup")).is_some_and(|own| {
                Path::new("/sys/fs/cgroup")
                    .join(own.trim_start_matches('/'))
                    .join("memory.swap.max")
                    .exists()
            })
        } else {
            Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
        };
        let hugetlb_controller = if cgroup_unified {
            read("/sys/fs/cgroup/cgroup.controllers")
                .split_whitespace()
                .any(|c| c == "hugetlb")
        } else {
            Path::new("/sys/fs/cgroup/hugetlb").is_dir()
        };
        HostFacts {
            oom_score_adj: read("/proc/self/oom_score_adj").trim().parse().unwrap_or(0),
            apparmor: read("/sys/module/apparmor/parameters/enabled").starts_with('Y'),
            seccomp_profile_root: PathBuf::from(KUBELET_SECCOMP_ROOT),
            hostname: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            cgroup_unified,
            swap_controller,
            hugetlb_controller,
            capabilities: cap_eff(&read("/proc/self/status")),
        }
    }
}

/// The `CapEff` mask of `/proc/self/status` content.
fn cap_eff(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// The cgroup v2 path of this process from `/proc/self/cgroup` content (`0::/path`).
fn cgroup2_own_path(proc_self_cgroup: &str) -> Option<&str> {
    proc_self_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
}

/// Character or block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// A character device (`c`).
    Char,
    /// A block device (`b`).
    Block,
}

/// One device node found on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDevice {
    /// Its path relative to the path asked for: empty for that node itself, the
    /// sub-path for a node found under a requested directory.
    pub relative: PathBuf,
    /// Char or block.
    pub kind: DeviceKind,
    /// Major number.
    pub major: i64,
    /// Minor number.
    pub minor: i64,
    /// Permission bits (`0o777` mask).
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
}

/// The host lookups a container spec needs. [`SystemLookup`] is the real one.
pub trait HostLookup {
    /// The content of the seccomp profile file at `path` (absolute).
    fn seccomp_profile(&self, path: &Path) -> io::Result<String>;

    /// The device nodes at `path` after following symlinks: the node itself, or each
    /// node under it when it is a directory. An error when it is neither.
    fn devices(&self, path: &Path) -> io::Result<Vec<HostDevice>>;

    /// Every device node of the host's `/dev` a privileged container gets, relative to
    /// `/dev` (without the `pts`, `shm`, `mqueue`, `fd` trees and the console, which
    /// the container has its own of).
    fn host_devices(&self) -> io::Result<Vec<HostDevice>>;
}

/// [`HostLookup`] on this host's filesystem.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemLookup;

impl HostLookup for SystemLookup {
    fn seccomp_profile(&self, path: &Path) -> io::Result<String> {
        fs::read_to_string(path)
    }

    fn devices(&self, path: &Path) -> io::Result<Vec<HostDevice>> {
        let resolved = fs::canonicalize(path)?;
        let meta = fs::metadata(&resolved)?;
        if meta.is_dir() {
            let mut found = Vec::new();
            walk(&resolved, Path::new(""), &|_| false, &mut found)?;
            return Ok(found);
        }
        device_of(&meta, PathBuf::new())
            .map(|d| vec![d])
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{} is not a device node", resolved.display()),
                )
            })
    }

    fn host_devices(&self) -> io::Result<Vec<HostDevice>> {
        let skip = |rel: &Path| {
            matches!(
                rel.to_str(),
                Some(
                    "pts" | "shm" | "fd" | "mqueue" | "console" | ".lxc" | ".lxd-mounts" | ".udev"
                )
            )
        };
        let mut found = Vec::new();
        walk(Path::new("/dev"), Path::new(""), &skip, &mut found)?;
        Ok(found)
    }
}

/// Collects the device nodes under `root/rel`, not following symlinks (a device node
/// reached through a link is found under its real name, if at all).
fn walk(
    root: &Path,
    rel: &Path,
    skip: &dyn Fn(&Path) -> bool,
    found: &mut Vec<HostDevice>,
) -> io::Result<()> {
    for entry in fs::read_dir(root.join(rel))? {
        let Ok(entry) = entry else { continue };
        let child = rel.join(entry.file_name());
        if skip(&child) {
            continue;
        }
        // Entries can vanish while we walk (udev); skip what cannot be read.
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            let _ = walk(root, &child, skip, found);
        } else if let Some(device) = device_of(&meta, child) {
            found.push(device);
        }
    }
    Ok(())
}

fn device_of(meta: &fs::Metadata, relative: PathBuf) -> Option<HostDevice> {
    let kind = if meta.file_type().is_char_device() {
        DeviceKind::Char
    } else if meta.file_type().is_block_device() {
        DeviceKind::Block
    } else {
        return None;
    };
    let rdev = meta.rdev();
    Some(HostDevice {
        relative,
        kind,
        major: nix::sys::stat::major(rdev) as i64,
        minor: nix::sys::stat::minor(rdev) as i64,
        mode: meta.mode() & 0o777,
        uid: meta.uid(),
        gid: meta.gid(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup2_path_is_read_from_the_unified_line() {
        assert_eq!(
            cgroup2_own_path("12:memory:/x\n0::/system.slice/berth.service\n"),
            Some("/system.slice/berth.service")
        );
        assert_eq!(cgroup2_own_path("12:memory:/x\n"), None);
    }

    #[test]
    fn cap_eff_is_read_from_status() {
        let status = "Name:\tx\nCapPrm:\t0000000000000001\nCapEff:\t000001fffeffffff\n";
        assert_eq!(cap_eff(status), Some(0x1fffeffffff));
        assert_eq!(cap_eff("Name:\tx\n"), None);
    }

    #[test]
    fn dev_null_is_found_as_the_char_device_1_3() {
        let found = SystemLookup.devices(Path::new("/dev/null")).unwrap();
        assert_eq!(found.len(), 1);
        let null = &found[0];
        assert_eq!(
            (null.kind, null.major, null.minor),
            (DeviceKind::Char, 1, 3)
        );
        assert_eq!(null.relative, PathBuf::new());
    }

    #[test]
    fn a_regular_file_is_not_a_device() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, "x").unwrap();
        let err = SystemLookup.devices(&file).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("not a device node"), "{err}");
    }

    #[test]
    fn host_devices_hold_null_and_skip_the_containers_own_trees() {
        let all = SystemLookup.host_devices().unwrap();
        assert!(all.iter().any(|d| d.relative == Path::new("null")));
        assert!(!all.iter().any(|d| d.relative.starts_with("pts")));
        assert!(!all.iter().any(|d| d.relative == Path::new("console")));
    }

    #[test]
    fn detect_reads_this_host() {
        let facts = HostFacts::detect();
        assert_eq!(facts.seccomp_profile_root, Path::new(KUBELET_SECCOMP_ROOT));
        // The tests run as root: at least the default capabilities.
        assert!(
            facts
                .capabilities
                .is_some_and(|c| c & 0xa80425fb == 0xa80425fb),
            "{facts:?}"
        );
        assert!(!facts.hostname.is_empty());
    }
}
