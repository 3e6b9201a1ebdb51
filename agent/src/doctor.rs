//! `berth doctor`: what berth needs from this host, checked without changing it. Each
//! check is ok or missing with the fix; a missing *required* one means berth cannot
//! serve (or its node would never be Ready), and the command exits non-zero.

use std::fmt;
use std::fs;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::config::Config;

/// How long a reachability check waits for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether berth cannot serve without it.
    pub required: bool,
    /// `Ok(what was found)` or `Err((what is missing, the fix))`.
    pub outcome: Result<String, (String, String)>,
}

impl Check {
    fn new(name: &str, required: bool, outcome: Result<String, (String, String)>) -> Self {
        Check {
            name: name.to_string(),
            required,
            outcome,
        }
    }

    /// Missing, and berth cannot serve without it.
    pub fn fails(&self) -> bool {
        self.required && self.outcome.is_err()
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Ok(found) => write!(f, "ok       {:<18} {found}", self.name),
            Err((missing, fix)) => {
                let word = if self.required { "MISSING" } else { "missing" };
                write!(
                    f,
                    "{word}  {:<18} {missing}\n         {:<18} fix: {fix}",
                    self.name, ""
                )
            }
        }
    }
}

fn missing(what: impl Into<String>, fix: impl Into<String>) -> Result<String, (String, String)> {
    Err((what.into(), fix.into()))
}

/// Every check, in the order printed.
pub fn checks(config: &Config) -> Vec<Check> {
    let mut out = vec![
        Check::new("root", true, root()),
        Check::new("overlayfs", true, overlayfs()),
        Check::new("namespaces", true, namespaces()),
        Check::new("user namespaces", false, user_namespaces()),
        Check::new("seccomp", false, seccomp()),
        Check::new("idmapped mounts", false, idmapped_mounts()),
        Check::new("cgroups", true, cgroups(Path::new("/sys/fs/cgroup"))),
        Check::new(
            "CNI",
            true,
            runtimes::network::check_config(&config.network).or_else(|why| {
                missing(
                    why,
                    "install the CNI plugins (Debian: apt-get install containernetworking-plugins) \
                     or point network.plugin_dirs / network.conf_dir at them",
                )
            }),
        ),
        Check::new("state dir", true, private_dir(&config.state_dir)),
        Check::new("run dir", true, private_dir(&config.run_dir)),
    ];
    if let Some(dir) = config.socket.parent() {
        out.push(Check::new("socket dir", true, private_dir(dir)));
    }
    for (registry, endpoints) in &config.registries.mirrors {
        for endpoint in endpoints {
            out.push(Check::new(
                &format!("mirror {registry}"),
                false,
                tcp_reachable(endpoint).or_else(|why| {
                    missing(
                        why,
                        format!("start the mirror or fix registries.mirrors[{registry}]"),
                    )
                }),
            ));
        }
    }
    if let Some(c) = &config.backends.containerd {
        out.push(Check::new(
            &format!("handler {}", c.handler),
            false,
            unix_reachable(&c.address).or_else(|why| {
                missing(
                    format!("containerd: {why}"),
                    "start containerd (hack/containerd start DIR) or fix backends.containerd.address",
                )
            }),
        ));
    }
    if let Some(d) = &config.backends.delegate {
        let reach = match d.address.strip_prefix("unix://") {
            Some(path) => unix_reachable(Path::new(path)),
            None => tcp_reachable(&d.address),
        };
        out.push(Check::new(
            &format!("handler {}", d.handler),
            false,
            reach.or_else(|why| {
                missing(
                    format!("delegate: {why}"),
                    "start `berth delegate` there or fix backends.delegate.address",
                )
            }),
        ));
    }
    out
}

fn root() -> Result<String, (String, String)> {
    if nix::unistd::geteuid().is_root() {
        Ok("running as root".into())
    } else {
        missing("not running as root", "run berth (and this check) as root")
    }
}

fn overlayfs() -> Result<String, (String, String)> {
    let filesystems = fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"))
    {
        Ok("overlay in /proc/filesystems".into())
    } else {
        missing("overlay is not in /proc/filesystems", "modprobe overlay")
    }
}

fn namespaces() -> Result<String, (String, String)> {
    let kinds = ["mnt", "net", "ipc", "uts", "pid", "cgroup"];
    let absent: Vec<&str> = kinds
        .iter()
        .copied()
        .filter(|k| !Path::new("/proc/self/ns").join(k).exists())
        .collect();
    if absent.is_empty() {
        Ok(kinds.join(", "))
    } else {
        missing(
            format!("no {} namespaces", absent.join(", ")),
            "a kernel built with CONFIG_NAMESPACES and each of them",
        )
    }
}

fn user_namespaces() -> Result<String, (String, String)> {
    let max = fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    match max {
        Some(n) if n > 0 => Ok(format!("user.max_user_namespaces = {n}")),
        _ => missing(
            "user namespaces are off: pods with hostUsers: false are refused",
            "sysctl -w user.max_user_namespaces=15000",
        ),
    }
}

fn seccomp() -> Result<String, (String, String)> {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    if status.lines().any(|l| l.starts_with("Seccomp:")) {
        Ok("seccomp filters available".into())
    } else {
        missing(
            "no seccomp: RuntimeDefault and Localhost profiles cannot be applied",
            "a kernel built with CONFIG_SECCOMP_FILTER",
        )
    }
}

/// Idmapped mounts came with Linux 5.12 (`mount_setattr`); pods with their own user
/// namespace need them for their volumes.
fn idmapped_mounts() -> Result<String, (String, String)> {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    if (major, minor) >= (5, 12) {
        Ok(format!("kernel {release}"))
    } else {
        missing(
            format!(
                "kernel {release} is older than 5.12: pods with hostUsers: false get no volumes"
            ),
            "a kernel >= 5.12",
        )
    }
}

/// The cgroup mode and the controllers pods need.
fn cgroups(root: &Path) -> Result<String, (String, String)> {
    const NEEDED: [&str; 4] = ["cpu", "memory", "pids", "cpuset"];
    if let Ok(list) = fs::read_to_string(root.join("cgroup.controllers")) {
        let have: Vec<&str> = list.split_whitespace().collect();
        let absent: Vec<&str> = NEEDED
            .iter()
            .copied()
            .filter(|c| !have.contains(c))
            .collect();
        return if absent.is_empty() {
            Ok(format!("cgroup v2, controllers {}", have.join(" ")))
        } else {
            missing(
                format!("cgroup v2 without the {} controller(s)", absent.join(", ")),
                "enable them in the root cgroup (cgroup.subtree_control) or on the kernel command line",
            )
        };
    }
    let absent: Vec<&str> = NEEDED
        .iter()
        .copied()
        .filter(|c| !root.join(c).join("tasks").exists())
        .collect();
    let hybrid = root.join("unified").join("cgroup.controllers").exists();
    let mode = if hybrid {
        "cgroup v1 (hybrid)"
    } else {
        "cgroup v1"
    };
    if absent.is_empty() {
        Ok(format!("{mode}, controllers {}", NEEDED.join(" ")))
    } else {
        missing(
            format!(
                "{mode} without the {} controller(s) mounted under {}",
                absent.join(", "),
                root.display()
            ),
            "mount each v1 controller under /sys/fs/cgroup (or boot with cgroup v2)",
        )
    }
}

/// A directory only root may write: berth keeps secrets and the CRI socket there.
/// One that does not exist yet is fine (berth makes it 0700/0711).
fn private_dir(dir: &Path) -> Result<String, (String, String)> {
    let Ok(meta) = fs::metadata(dir) else {
        return Ok(format!("{} will be created at start", dir.display()));
    };
    if !meta.is_dir() {
        return missing(
            format!("{} is not a directory", dir.display()),
            "remove it or point the config elsewhere",
        );
    }
    let mode = meta.permissions().mode() & 0o7777;
    if meta.uid() != 0 || mode & 0o022 != 0 {
        return missing(
            format!(
                "{} is owned by uid {} with mode {mode:o}: others could replace berth's files",
                dir.display(),
                meta.uid()
            ),
            format!("chown root {0} && chmod go-w {0}", dir.display()),
        );
    }
    Ok(format!("{} (uid 0, mode {mode:o})", dir.display()))
}

fn unix_reachable(path: &Path) -> Result<String, String> {
    UnixStream::connect(path)
        .map(|_| format!("{} answers", path.display()))
        .map_err(|e| format!("cannot connect to {}: {e}", path.display()))
}

/// `http://host[:port]`, `https://host[:port]` or `host[:port]` (HTTPS): one TCP
/// connection to it.
fn tcp_reachable(endpoint: &str) -> Result<String, String> {
    let (default_port, rest) = match endpoint.split_once("://") {
        Some(("http", rest)) => (80, rest),
        Some((_, rest)) => (443, rest),
        None => (443, endpoint),
    };
    let host = rest.split('/').next().unwrap_or_default();
    let with_port = if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        host.to_string()
    } else {
        format!("{host}:{default_port}")
    };
    let addrs = with_port
        .to_socket_addrs()
        .map_err(|e| format!("{endpoint}: {e}"))?;
    let mut last = format!("{endpoint}: no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(_) => return Ok(format!("{endpoint} accepts connections")),
            Err(e) => last = format!("cannot connect to {endpoint} ({addr}): {e}"),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_world_writable_dir_is_missing_and_an_absent_one_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        assert!(private_dir(&dir.path().join("later")).is_ok());
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let (why, fix) = private_dir(dir.path()).unwrap_err();
        assert!(why.contains("mode 777"), "{why}");
        assert!(fix.contains("chmod go-w"), "{fix}");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        if nix::unistd::geteuid().is_root() {
            assert!(private_dir(dir.path()).is_ok());
        }
    }

    #[test]
    fn cgroup_controllers_are_found_in_either_mode() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        assert!(cgroups(dir.path()).unwrap().starts_with("cgroup v2"));
        fs::write(dir.path().join("cgroup.controllers"), "cpu io\n").unwrap();
        let (why, _) = cgroups(dir.path()).unwrap_err();
        assert!(why.contains("memory, pids, cpuset"), "{why}");
        let v1 = tempfile::tempdir().unwrap();
        for c in ["cpu", "memory", "pids"] {
            fs::create_dir(v1.path().join(c)).unwrap();
            fs::write(v1.path().join(c).join("tasks"), "").unwrap();
        }
        let (why, _) = cgroups(v1.path()).unwrap_err();
        assert!(why.contains("without the cpuset"), "{why}");
    }

    #[test]
    fn reachability_names_the_endpoint() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(tcp_reachable(&format!("http://127.0.0.1:{port}/v2")).is_ok());
        drop(listener);
        let err = tcp_reachable(&format!("127.0.0.1:{port}")).unwrap_err();
        assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
        assert!(unix_reachable(Path::new("/nonexistent/sock")).is_err());
    }

    #[test]
    fn missing_cni_plugins_fail_the_doctor() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.network.conf_dir = dir.path().join("net.d");
        config.network.plugin_dirs = vec![dir.path().join("bin")];
        let cni = checks(&config)
            .into_iter()
            .find(|c| c.name == "CNI")
            .unwrap();
        assert!(cni.fails(), "{cni}");
        assert!(
            cni.to_string().contains("bridge, host-local, portmap"),
            "{cni}"
        );
        // Nothing was written.
        assert!(!config.network.conf_dir.exists());
    }
}
