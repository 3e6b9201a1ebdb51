//! Resource usage from the cgroup files of the hierarchy libcontainer uses: v1
//! (`cpuacct.usage`, `memory.usage_in_bytes` and `memory.stat`'s `total_*`,
//! `pids.current`) or v2 (`cpu.stat`'s `usage_usec`, `memory.current`, `memory.stat`).
//! The working set is usage minus inactive file pages, as kubelet computes it.

use std::fs;

use super::cgroups::{parse_keyed, read_number, Hierarchy};
use crate::types::MemoryStats;

/// The numbers CRI's container and pod stats are made of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupUsage {
    /// CPU time, cumulative, in nanoseconds.
    pub cpu_ns: u64,
    /// Memory.
    pub memory: MemoryStats,
    /// Processes.
    pub processes: u64,
}

/// Reads the usage of `cgroup` (zeros for what is missing: a cgroup not made yet).
pub fn read(h: &Hierarchy, cgroup: &str) -> CgroupUsage {
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
        }
        Hierarchy::V2 { .. } => {
            usage.cpu_ns = parse_keyed(&text("cpu", "cpu.stat"), "usage_usec").unwrap_or(0) * 1000;
            usage.memory.usage = number("memory", "memory.current");
            usage.memory.working_set = usage
                .memory
                .usage
                .saturating_sub(stat_value("inactive_file"));
            usage.memory.rss = stat_value("anon");
            usage.memory.page_faults = stat_value("pgfault");
            usage.memory.major_page_faults = stat_value("pgmajfault");
        }
    }
    usage
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
            read(&h, "/b/c"),
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
        let u = read(&h, "/b/c");
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
        assert_eq!(read(&h, "/gone"), CgroupUsage::default());
    }
}
