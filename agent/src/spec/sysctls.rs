//! Pod sysctls: only namespaced ones, and only for namespaces the pod owns. There is no
//! pause container, so the backend writes them into the pod's pinned namespaces; a
//! container's spec carries none (it joins those namespaces).

use std::collections::BTreeMap;

use berth_proto::cri::v1::PodSandboxConfig;
use runtimes::types::{NamespaceMode, NamespaceOptions};

use super::invalid;

/// The namespace a sysctl belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Ipc,
    Net,
    Uts,
}

/// Which namespace owns `name` (kubelet's table), `None` for a node-wide sysctl.
fn owner(name: &str) -> Option<Owner> {
    const IPC: [&str; 8] = [
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
    ];
    if IPC.contains(&name) || name.starts_with("fs.mqueue.") {
        Some(Owner::Ipc)
    } else if name.starts_with("net.") {
        Some(Owner::Net)
    } else if name == "kernel.hostname" || name == "kernel.domainname" {
        Some(Owner::Uts)
    } else {
        None
    }
}

/// The pod's sysctls by dotted name, validated against `namespaces` (the pod's,
/// from [`super::namespace_options`]): each must be namespaced and its namespace must
/// be the pod's own (no `net.*` with host network, no IPC ones with host IPC).
/// Slash-separated names (`net/ipv4/ip_forward`) are turned into dotted ones.
pub fn sysctls(
    sandbox: &PodSandboxConfig,
    namespaces: &NamespaceOptions,
) -> runtimes::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let Some(linux) = &sandbox.linux else {
        return Ok(out);
    };
    for (raw, value) in &linux.sysctls {
        let field = format!("config.linux.sysctls[{raw:?}]");
        let name = dotted(raw);
        let valid_name = !name.is_empty()
            && name.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/'))
            });
        if !valid_name {
            return Err(invalid(&field, "is not a sysctl name"));
        }
        if value.contains(['\0', '\n']) {
            return Err(invalid(&field, "the value holds a NUL or newline"));
        }
        let shared = match owner(&name) {
            None => {
                return Err(invalid(
                    &field,
                    "is not namespaced: setting it would change the whole node",
                ));
            }
            Some(Owner::Ipc) => namespaces.ipc == NamespaceMode::Node,
            Some(Owner::Net | Owner::Uts) => namespaces.network == NamespaceMode::Node,
        };
        if shared {
            return Err(invalid(
                &field,
                "belongs to a namespace the pod shares with the node",
            ));
        }
        out.insert(name, value.clone());
    }
    Ok(out)
}

/// kubelet's conversion: with `/` as the separator, dots inside a part (an interface
/// name such as `eno2.100`) become slashes and slashes become dots.
fn dotted(name: &str) -> String {
    let first_sep = name.find(['.', '/']);
    match first_sep.map(|i| &name[i..=i]) {
        Some("/") => name
            .chars()
            .map(|c| match c {
                '/' => '.',
                '.' => '/',
                c => c,
            })
            .collect(),
        _ => name.to_string(),
    }
}
