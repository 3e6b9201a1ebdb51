//! A pod's sysctls, applied once inside its pinned namespaces: `net.*` in the network
//! namespace, `kernel.shm*`, `kernel.msg*`, `kernel.sem` and `fs.mqueue.*` in the IPC
//! namespace, `kernel.hostname`/`kernel.domainname` in the UTS namespace. A sysctl of a
//! namespace the pod shares with the host (host network, host IPC) or one that is not
//! namespaced at all is refused: it would change the node.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::network::{in_namespace, NsKind};
use crate::types::{NamespaceMode, NamespaceOptions};

/// The namespace a sysctl belongs to, or `None` when it is not namespaced.
pub fn namespace_of(name: &str) -> Option<NsKind> {
    let name = name.replace('/', ".");
    if name.starts_with("net.") {
        Some(NsKind::Net)
    } else if name.starts_with("kernel.shm")
        || name.starts_with("kernel.msg")
        || name == "kernel.sem"
        || name.starts_with("fs.mqueue.")
    {
        Some(NsKind::Ipc)
    } else if name == "kernel.hostname" || name == "kernel.domainname" {
        Some(NsKind::Uts)
    } else {
        None
    }
}

/// The file under `/proc/sys` of `name` (`net.core.somaxconn` or `net/core/somaxconn`).
fn proc_path(name: &str) -> PathBuf {
    let rel = if name.contains('/') {
        name.to_string()
    } else {
        name.replace('.', "/")
    };
    Path::new("/proc/sys").join(rel)
}

/// Refuses sysctls the pod cannot have: malformed, not namespaced, or of a namespace
/// the pod shares with the node.
pub fn validate(sysctls: &BTreeMap<String, String>, ns: &NamespaceOptions) -> Result<()> {
    for (name, value) in sysctls {
        let well_formed = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
            && !name.split(['.', '/']).any(|p| p.is_empty() || p == "..");
        if !well_formed || value.contains('\n') {
            return Err(Error::InvalidSpec(format!(
                "RunPodSandbox: sysctl {name:?}={value:?} is malformed"
            )));
        }
        let shared_with_node = match namespace_of(name) {
            None | Some(NsKind::User) => {
                return Err(Error::InvalidSpec(format!(
                    "RunPodSandbox: sysctl {name} is not namespaced and would change the node"
                )))
            }
            Some(NsKind::Net) | Some(NsKind::Uts) => ns.network == NamespaceMode::Node,
            Some(NsKind::Ipc) => ns.ipc == NamespaceMode::Node,
        };
        if shared_with_node {
            return Err(Error::InvalidSpec(format!(
                "RunPodSandbox: sysctl {name} is not allowed: the pod shares that namespace with the node"
            )));
        }
    }
    Ok(())
}

/// Writes `sysctls` inside the pinned namespaces (`pin(kind)` gives each one's path).
pub fn apply(
    sysctls: &BTreeMap<String, String>,
    pin: impl Fn(NsKind) -> Option<PathBuf>,
) -> Result<()> {
    for kind in [NsKind::Net, NsKind::Ipc, NsKind::Uts] {
        let mine: Vec<(&String, &String)> = sysctls
            .iter()
            .filter(|(n, _)| namespace_of(n) == Some(kind))
            .collect();
        if mine.is_empty() {
            continue;
        }
        let path = pin(kind).ok_or_else(|| {
            Error::FailedPrecondition(format!("the pod has no {kind:?} namespace for its sysctls"))
        })?;
        // In a thread that joined the namespace: /proc/sys shows the calling thread's
        // namespaces.
        in_namespace(kind, &path, || -> Result<()> {
            for (name, value) in mine {
                std::fs::write(proc_path(name), value).map_err(|e| {
                    Error::InvalidSpec(format!("RunPodSandbox: setting sysctl {name}={value}: {e}"))
                })?;
            }
            Ok(())
        })??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sysctls_are_sorted_into_their_namespaces() {
        assert_eq!(namespace_of("net.core.somaxconn"), Some(NsKind::Net));
        assert_eq!(
            namespace_of("net/ipv4/ip_unprivileged_port_start"),
            Some(NsKind::Net)
        );
        assert_eq!(namespace_of("kernel.shm_rmid_forced"), Some(NsKind::Ipc));
        assert_eq!(namespace_of("kernel.msgmax"), Some(NsKind::Ipc));
        assert_eq!(namespace_of("fs.mqueue.msg_max"), Some(NsKind::Ipc));
        assert_eq!(namespace_of("kernel.domainname"), Some(NsKind::Uts));
        assert_eq!(namespace_of("kernel.panic"), None);
        assert_eq!(namespace_of("vm.swappiness"), None);
    }

    #[test]
    fn proc_paths_accept_both_separators() {
        assert_eq!(
            proc_path("net.core.somaxconn"),
            Path::new("/proc/sys/net/core/somaxconn")
        );
        assert_eq!(
            proc_path("net/ipv4/conf/eth0.100/forwarding"),
            Path::new("/proc/sys/net/ipv4/conf/eth0.100/forwarding")
        );
    }

    #[test]
    fn the_nodes_namespaces_and_unnamespaced_sysctls_are_refused() {
        let own = NamespaceOptions::default();
        validate(
            &map(&[
                ("net.core.somaxconn", "1024"),
                ("kernel.shm_rmid_forced", "1"),
            ]),
            &own,
        )
        .unwrap();
        let host_net = NamespaceOptions {
            network: NamespaceMode::Node,
            ..Default::default()
        };
        let err = validate(&map(&[("net.core.somaxconn", "1")]), &host_net).unwrap_err();
        assert!(err.to_string().contains("shares that namespace"), "{err}");
        validate(&map(&[("kernel.shm_rmid_forced", "1")]), &host_net).unwrap();
        let host_ipc = NamespaceOptions {
            ipc: NamespaceMode::Node,
            ..Default::default()
        };
        assert!(validate(&map(&[("kernel.msgmax", "1")]), &host_ipc).is_err());
        let err = validate(&map(&[("kernel.panic", "1")]), &own).unwrap_err();
        assert!(err.to_string().contains("not namespaced"), "{err}");
        assert!(validate(&map(&[("net/../../etc", "1")]), &own).is_err());
        assert!(validate(&map(&[("net.core.x", "1\n2")]), &own).is_err());
    }
}
