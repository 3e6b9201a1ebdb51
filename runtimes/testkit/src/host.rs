//! The host as pod tests see it: what a pod can leave behind (mounts, cgroups, veths on
//! a bridge, host-local address allocations, NAT rules, processes), how to pick a
//! private subnet, and how to sweep up after a test that failed half way.
//!
//! Every test that runs pods owns a directory, a cgroup parent, a bridge, a subnet and a
//! tag that is in each of its CNI container ids; the functions here take those, so
//! tests running side by side never look at, or remove, each other's things.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A number that differs between calls and processes.
pub fn random() -> u32 {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish() as u32
}

/// Output of a command that must succeed.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A second octet X in `range` such that nothing on the host routes or owns
/// 10.X.0.0/16 now. Suites keep to ranges of their own (the network tests 200-254, the
/// youki tests 150-199, berth's black-box tests 100-149), and calls in one process
/// walk the range from a random start, so parallel tests rarely even try the same one.
pub fn free_subnet_octet(range: std::ops::Range<u8>) -> u8 {
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        random() % 1000,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    let used = run("ip", &["-4", "route", "show", "table", "all"]) + &run("ip", &["-4", "addr"]);
    let width = u32::from(range.end - range.start);
    for _ in 0..width {
        let x = range.start + (NEXT.fetch_add(1, Ordering::SeqCst) % width) as u8;
        if !used.contains(&format!("10.{x}.")) {
            return x;
        }
    }
    panic!("no free 10.X.0.0/16 subnet with X in {range:?} on this host");
}

/// Mount points at or below `dir`, as `/proc/self/mountinfo` lists them (in order).
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(dir.as_ref()))
        .map(String::from)
        .collect()
}

/// The directories of `cgroup` (a cgroupfs path) in every v1 hierarchy and the v2
/// tree, where they exist.
pub fn cgroup_dirs(cgroup: &str) -> Vec<PathBuf> {
    let rel = cgroup.trim_start_matches('/');
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let d = entry.path().join(rel);
        if d.is_dir() {
            out.push(d);
        }
    }
    let unified = Path::new("/sys/fs/cgroup").join(rel);
    if unified.join("cgroup.procs").exists() && !out.contains(&unified) {
        out.push(unified);
    }
    out
}

/// The subdirectories of `dir` (none when it does not exist).
pub fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Every cgroup below `cgroup` in every hierarchy, parents before children.
pub fn cgroups_below(cgroup: &str) -> Vec<PathBuf> {
    let mut tree: Vec<PathBuf> = cgroup_dirs(cgroup)
        .iter()
        .flat_map(|d| subdirs(d))
        .collect();
    let mut i = 0;
    while i < tree.len() {
        let children = subdirs(&tree[i]);
        tree.extend(children);
        i += 1;
    }
    tree
}

/// Live (not zombie) processes whose command line mentions `text`, as `pid: cmdline`.
pub fn processes_mentioning(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
        if cmdline.contains(text) && !zombie {
            out.push(format!("{name}: {cmdline}"));
        }
    }
    out
}

/// The host-side veths on `bridge`, sorted.
pub fn bridge_ports(bridge: &str) -> Vec<String> {
    crate::names(&Path::new("/sys/class/net").join(bridge).join("brif"))
}

/// The addresses host-local holds in its data dir `dir` (`<dataDir>/<network>`), its
/// `lock` and `last_reserved_ip.*` files aside.
pub fn ipam_allocations(dir: &Path) -> Vec<String> {
    let mut files = crate::names(dir);
    files.retain(|f| f != "lock" && !f.starts_with("last_reserved_ip"));
    files
}

/// nat-table rules (as `iptables -S` prints them) that mention any of `needles` (a
/// test's tag, in every CNI container id and hence in portmap's comments, or its
/// subnet), and every rule of the per-pod `CNI-DN-*` chains those name (their
/// `127.0.0.1` rules name neither).
pub fn nat_rules(needles: &[&str]) -> Vec<String> {
    let all = run("iptables", &["-w", "-t", "nat", "-S"]);
    let matching: Vec<&str> = all
        .lines()
        .filter(|l| needles.iter().any(|n| l.contains(n)))
        .collect();
    let chains: Vec<&str> = matching
        .iter()
        .flat_map(|l| l.split(' '))
        .filter(|w| w.starts_with("CNI-DN-"))
        .collect();
    all.lines()
        .filter(|l| {
            matching.contains(l) || l.split(' ').nth(1).is_some_and(|c| chains.contains(&c))
        })
        .map(str::to_string)
        .collect()
}

/// Removes the nat rules that mention `tag` and the `CNI-DN-*` chains they jump to.
pub fn remove_nat_rules(tag: &str) {
    let mut chains = Vec::new();
    for rule in nat_rules(&[tag]).iter().filter(|l| l.starts_with("-A ")) {
        if let Some(chain) = rule
            .split(" -j ")
            .nth(1)
            .filter(|c| c.starts_with("CNI-DN-"))
        {
            chains.push(chain.trim().to_string());
        }
        let _ = Command::new("sh")
            .args(["-c", &format!("iptables -w -t nat -D {}", &rule[3..])])
            .status();
    }
    for chain in chains {
        for op in ["-F", "-X"] {
            let _ = Command::new("iptables")
                .args(["-w", "-t", "nat", op, &chain])
                .status();
        }
    }
}

fn sigkill(pid: i32) {
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// What one test made on the host, for [`sweep`].
pub struct Leftovers<'a> {
    /// The test's directory: processes naming it are killed, mounts below it undone.
    pub dir: &'a Path,
    /// Its cgroup parent: every process in it is killed and its cgroups removed.
    pub cgroup_parent: &'a str,
    /// Its bridge, deleted.
    pub bridge: &'a str,
    /// The tag in its CNI container ids: nat rules naming it are removed.
    pub tag: &'a str,
}

/// The safety net of a test that failed half way (a passing test has removed
/// everything already): kills its supervisors and containers, unmounts what is mounted
/// below its directory, removes its cgroups, nat rules and bridge.
pub fn sweep(left: &Leftovers) {
    let dir = left.dir.to_string_lossy().into_owned();
    for line in processes_mentioning(&dir) {
        if let Some(pid) = line.split(':').next().and_then(|p| p.parse().ok()) {
            sigkill(pid);
        }
    }
    let tree = cgroups_below(left.cgroup_parent);
    for d in tree.iter().rev() {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
        procs
            .lines()
            .filter_map(|p| p.parse().ok())
            .for_each(sigkill);
    }
    std::thread::sleep(Duration::from_millis(100));
    for d in tree.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
    for d in cgroup_dirs(left.cgroup_parent) {
        let _ = std::fs::remove_dir(&d);
        // The parent all of a suite's tests share (`/berth-e2e`): gone with its last
        // test (removing it fails harmlessly while another test's cgroup is in it).
        if let Some(parent) = d.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
    let mut mounts = mounts_under(left.dir);
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = umount2(m.as_str(), MntFlags::MNT_DETACH);
    }
    remove_nat_rules(left.tag);
    if Path::new("/sys/class/net").join(left.bridge).exists() {
        let _ = Command::new("ip")
            .args(["link", "del", left.bridge])
            .status();
    }
}
