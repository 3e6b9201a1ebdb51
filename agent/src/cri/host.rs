//! Facts about this host that container specs depend on, read once at start-up.

use std::fs;
use std::path::PathBuf;

use crate::spec::HostFacts;

/// Where kubelet keeps `localhost/` seccomp profiles (its `--root-dir` default).
const KUBELET_SECCOMP_ROOT: &str = "/var/lib/kubelet/seccomp";

/// Reads the agent's own `oom_score_adj` and whether AppArmor is enabled. A fact that
/// cannot be read takes the value that asks the least of the kernel: adj 0, no
/// AppArmor.
pub(super) fn detect() -> HostFacts {
    let read = |path: &str| fs::read_to_string(path).map(|s| s.trim().to_string());
    HostFacts {
        oom_score_adj: read("/proc/self/oom_score_adj")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        apparmor: read("/sys/module/apparmor/parameters/enabled").is_ok_and(|s| s == "Y"),
        seccomp_profile_root: PathBuf::from(KUBELET_SECCOMP_ROOT),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_our_own_oom_score_adj() {
        let ours: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(super::detect().oom_score_adj, ours);
    }
}
