//! Resource usage from the cgroup files of the hierarchy libcontainer uses: v1
//! (`cpuacct.usage`, `memory.usage_in_bytes` and `memory.stat`'s `total_*`,
//! `pids.current`) or v2 (`cpu.stat`'s `usage_usec`, `memory.current`, `memory.stat`).
//! The working set is usage minus inactive file pages, as kubelet computes it.

use std::fs;

use super::cgroups::{parse_keyed, read_number, Hierarchy};
use crate::types::{MemoryStats, UsageDetail};

/// The numbers CRI's container and pod stats are made of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupUsage {
    /// CPU time, cumulative, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory.
    pub memory: MemoryStats,
    /// Processes.
    pub processes: u64,
    /// The rest, for CRI metrics.
    pub detail: UsageDetail,
}

/// How much a read of a cgroup's usage covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// What CRI's container and pod stats show (CPU, memory, processes): the few
    /// files kubelet's stats listings need, read every few seconds.
    Stats,
    /// Also [`CgroupUsage::detail`], for CRI metrics (`ListPodSandboxMetrics`): CFS,
    /// cache, failures, OOM kills, limits, and the open files and sockets of every
    /// process (a walk of each one's `/proc/<pid>/fd`).
    Metrics,
}

/// USER_HZ: the unit of `cpuacct.stat` (100 on every Linux kernel of note).
const TICK_NS: u64 = 10_000_000;

/// Reads the usage of `cgroup` to `depth` (zeros for what is missing: a cgroup not
/// made yet; `detail` stays zero at [`Depth::Stats`]).
pub fn read(h: &Hierarchy, cgroup: &str, depth: Depth) -> CgroupUsage {
    let file = |controller: &str, name: &str| h.dir(controller, cgroup).map(|d| d.join(name));
    let number = |controller: &str, name: &str| {
        file(controller, name)
            .and_then(|p| read_number(&p))
            .unwrap_or(0)
    };
    let text = |controller: &str, name: &str| {
        file(controller, name)
            .and_then(|p| fs::read_to_string(p).ok())
            .unwrap_or_default()
    };
    let mut usage = CgroupUsage {
        processes: number("pids", "pids.current"),
        ..Default::default()
    };
    let stat = text("memory", "memory.stat");
    let stat_value = |key: &str| parse_keyed(&stat, key).unwrap_or(0);
    match h {
        Hierarchy::V1 { .. } => {
            usage.cpu_ns = number("cpuacct", "cpuacct.usage");
            usage.memory.usage = number("memory", "memory.usage_in_bytes");
            usage.memory.working_set = usage
                .memory
                .usage
                .saturating_sub(stat_value("total_inactive_file"));
            usage.memory.rss = stat_value("total_rss");
            usage.memory.page_faults = stat_value("total_pgfault");
            usage.memory.major_page_faults = stat_value("total_pgmajfault");
            if depth == Depth::Stats {
                return usage;
            }
            let cpu_stat = text("cpu", "cpu.stat");
            let acct = text("cpuacct", "cpuacct.stat");
            let d = &mut usage.detail;
            d.cpu_user_ns = parse_keyed(&acct, "user").unwrap_or(0) * TICK_NS;
            d.cpu_system_ns = parse_keyed(&acct, "system").unwrap_or(0) * TICK_NS;
            d.cfs_periods = parse_keyed(&cpu_stat, "nr_periods").unwrap_or(0);
            d.cfs_throttled_periods = parse_keyed(&cpu_stat, "nr_throttled").unwrap_or(0);
            d.cfs_throttled_ns = parse_keyed(&cpu_stat, "throttled_time").unwrap_or(0);
            d.memory_cache = stat_value("total_cache");
            d.memory_mapped_file = stat_value("total_mapped_file");
            d.memory_swap = stat_value("total_swap");
            d.memory_failcnt = number("memory", "memory.failcnt");
            d.memory_kernel = number("memory", "memory.kmem.usage_in_bytes");
            d.memory_max_usage = number("memory", "memory.max_usage_in_bytes");
            d.oom_events =
                parse_keyed(&text("memory", "memory.oom_control"), "oom_kill").unwrap_or(0);
        }
        Hierarchy::V2 { .. } => {
            let cpu_stat = text("cpu", "cpu.stat");
            let cpu = |key: &str| parse_keyed(&cpu_stat, key).unwrap_or(0);
            usage.cpu_ns = cpu("usage_usec") * 1000;
            usage.memory.usage = number("memory", "memory.current");
            usage.memory.working_set = usage
                .memory
                .usage
                .saturating_sub(stat_value("inactive_file"));
            usage.memory.rss = stat_value("anon");
            usage.memory.page_faults = stat_value("pgfault");
            usage.memory.major_page_faults = stat_value("pgmajfault");
            if depth == Depth::Stats {
                return usage;
            }
            let d = &mut usage.detail;
            d.cpu_user_ns = cpu("user_usec") * 1000;
            d.cpu_system_ns = cpu("system_usec") * 1000;
            d.cfs_periods = cpu("nr_periods");
            d.cfs_throttled_periods = cpu("nr_throttled");
            d.cfs_throttled_ns = cpu("throttled_usec") * 1000;
            d.memory_cache = stat_value("file");
            d.memory_mapped_file = stat_value("file_mapped");
            d.memory_kernel = stat_value("kernel");
            d.memory_swap = number("memory", "memory.swap.current");
            d.memory_max_usage = number("memory", "memory.peak");
            d.oom_events = parse_keyed(&text("memory", "memory.events"), "oom_kill").unwrap_or(0);
        }
    }
    usage.detail.threads = usage.processes;
    usage.detail.threads_max = number("pids", "pids.max");
    let (fds, sockets) = open_files(&text("pids", "cgroup.procs"));
    usage.detail.file_descriptors = fds;
    usage.detail.sockets = sockets;
    usage
}

/// The open file descriptors of the processes `procs` lists (a `cgroup.procs`), and
/// how many of them are sockets. A process gone meanwhile counts nothing.
fn open_files(procs: &str) -> (u64, u64) {
    let (mut fds, mut sockets) = (0, 0);
    for pid in procs.split_whitespace() {
        let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for entry in entries.flatten() {
            fds += 1;
            if fs::read_link(entry.path()).is_ok_and(|target| {
                target
                    .as_os_str()
                    .as_encoded_bytes()
                    .starts_with(b"socket:")
            }) {
                sockets += 1;
            }
        }
    }
    (fds, sockets)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn write(root: &std::path::Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    #[test]
    fn v1_numbers_come_from_their_controllers() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        write(r, "cpuacct/b/c/cpuacct.usage", "17029756\n");
        write(r, "memory/b/c/memory.usage_in_bytes", "1286144\n");
        write(
            r,
            "memory/b/c/memory.stat",
            "cache 1\nrss 2\ntotal_inactive_file 335872\ntotal_rss 49152\ntotal_pgfault 90\ntotal_pgmajfault 3\n",
        );
        write(r, "pids/b/c/pids.current", "2\n");
        let h = Hierarchy::V1 {
            mounts: ["cpuacct", "memory", "pids"]
                .iter()
                .map(|c| (c.to_string(), r.join(c)))
                .collect(),
        };
        assert_eq!(
            read(&h, "/b/c", Depth::Metrics),
            CgroupUsage {
                cpu_ns: 17029756,
                memory: MemoryStats {
                    usage: 1286144,
                    working_set: 950272,
                    rss: 49152,
                    page_faults: 90,
                    major_page_faults: 3,
                },
                processes: 2,
                detail: UsageDetail {
                    threads: 2,
                    ..Default::default()
                },
            }
        );
    }

    #[test]
    fn v2_numbers_come_from_the_single_tree() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        write(r, "b/c/cpu.stat", "usage_usec 1500\nuser_usec 1000\n");
        write(r, "b/c/memory.current", "4096000\n");
        write(
            r,
            "b/c/memory.stat",
            "anon 8192\nfile 0\ninactive_file 96000\npgfault 7\npgmajfault 1\n",
        );
        write(r, "b/c/pids.current", "1\n");
        let h = Hierarchy::V2 {
            root: PathBuf::from(r),
        };
        let u = read(&h, "/b/c", Depth::Stats);
        assert_eq!(u.cpu_ns, 1_500_000);
        assert_eq!(
            (u.memory.usage, u.memory.working_set, u.memory.rss),
            (4096000, 4000000, 8192)
        );
        assert_eq!(
            (
                u.memory.page_faults,
                u.memory.major_page_faults,
                u.processes
            ),
            (7, 1, 1)
        );
    }

    #[test]
    fn a_missing_cgroup_reads_as_zeros() {
        let h = Hierarchy::V2 {
            root: "/nonexistent".into(),
        };
        assert_eq!(read(&h, "/gone", Depth::Metrics), CgroupUsage::default());
    }

    /// Stats read what CRI's stats show and leave the detail (open files: a walk of
    /// every process's fds) to metrics.
    #[test]
    fn only_metrics_read_the_detail() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        write(
            r,
            "b/c/cpu.stat",
            "usage_usec 1500\nuser_usec 1000\nnr_periods 4\n",
        );
        write(r, "b/c/memory.current", "4096\n");
        write(r, "b/c/memory.events", "oom_kill 2\n");
        write(r, "b/c/pids.current", "1\n");
        // This test's own process, whose fds are open.
        write(r, "b/c/cgroup.procs", &format!("{}\n", std::process::id()));
        let h = Hierarchy::V2 {
            root: PathBuf::from(r),
        };
        let stats = read(&h, "/b/c", Depth::Stats);
        assert_eq!(
            (stats.cpu_ns, stats.memory.usage, stats.processes),
            (1_500_000, 4096, 1)
        );
        assert_eq!(stats.detail, UsageDetail::default());
        let metrics = read(&h, "/b/c", Depth::Metrics);
        assert_eq!(
            (metrics.cpu_ns, metrics.memory, metrics.processes),
            (stats.cpu_ns, stats.memory, stats.processes)
        );
        let d = metrics.detail;
        assert_eq!(
            (d.cpu_user_ns, d.cfs_periods, d.oom_events, d.threads),
            (1_000_000, 4, 2, 1)
        );
        assert!(d.file_descriptors >= 3, "{d:?}");
    }
}
