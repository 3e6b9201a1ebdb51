//! Namespace options: the CRI `NamespaceOption` of a pod or a container, validated into
//! [`NamespaceOptions`], and the OCI namespace list a container gets from them.
//!
//! A namespace the container shares with its pod is an OCI entry without a `path`: the
//! backend knows where the pod's pinned namespaces live and fills the path in.

use berth_proto::cri::v1::{IdMapping as CriIdMapping, NamespaceMode as CriMode, NamespaceOption};
use oci_spec::runtime::{
    LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceType,
};
use runtimes::types::{IdMapping, NamespaceMode, NamespaceOptions, UserNamespace};

use super::invalid;

/// Validates a CRI `NamespaceOption` (`field` names it in errors): network and IPC are
/// `POD` or `NODE`, PID anything but `TARGET` needs a target id, and a user namespace
/// is `NODE` without mappings or `POD` with exactly one uid and one gid mapping that
/// maps container id 0 (what critest's UserNamespaces specs expect).
///
/// Used for the pod (RunPodSandbox) and, through [`for_container`], for each container.
pub fn namespace_options(
    field: &str,
    options: Option<&NamespaceOption>,
) -> runtimes::Result<NamespaceOptions> {
    let Some(o) = options else {
        return Ok(NamespaceOptions::default());
    };
    let network = mode(&format!("{field}.network"), o.network)?;
    let ipc = mode(&format!("{field}.ipc"), o.ipc)?;
    for (name, m) in [("network", network), ("ipc", ipc)] {
        if !matches!(m, NamespaceMode::Pod | NamespaceMode::Node) {
            return Err(invalid(
                &format!("{field}.{name}"),
                format!("{m:?} is not supported; only POD and NODE are"),
            ));
        }
    }
    let pid = mode(&format!("{field}.pid"), o.pid)?;
    let target_id = match pid {
        NamespaceMode::Target if o.target_id.is_empty() => {
            return Err(invalid(
                &format!("{field}.target_id"),
                "is required when pid is TARGET",
            ));
        }
        NamespaceMode::Target => Some(o.target_id.clone()),
        _ => None,
    };
    let user = match &o.userns_options {
        None => None,
        Some(u) => {
            let field = format!("{field}.userns_options");
            match mode(&format!("{field}.mode"), u.mode)? {
                NamespaceMode::Node if u.uids.is_empty() && u.gids.is_empty() => None,
                NamespaceMode::Node => {
                    return Err(invalid(&field, "mode NODE takes no uid or gid mappings"));
                }
                NamespaceMode::Pod => Some(UserNamespace {
                    mode: NamespaceMode::Pod,
                    uids: mappings(&format!("{field}.uids"), &u.uids)?,
                    gids: mappings(&format!("{field}.gids"), &u.gids)?,
                }),
                other => {
                    return Err(invalid(
                        &format!("{field}.mode"),
                        format!(
                            "{other:?} is not supported for user namespaces; only POD and NODE are"
                        ),
                    ));
                }
            }
        }
    };
    Ok(NamespaceOptions {
        network,
        pid,
        ipc,
        target_id,
        user,
    })
}

/// The namespaces of a container of a pod whose options are `pod`: network, IPC and the
/// user namespace are the pod's (they exist once per pod), the PID mode is the
/// container's own when it gives options, else the pod's. A container's user namespace
/// options, when given, must equal the pod's.
pub(super) fn for_container(
    pod: &NamespaceOptions,
    field: &str,
    container: Option<&NamespaceOption>,
) -> runtimes::Result<NamespaceOptions> {
    let mut ns = pod.clone();
    if let Some(c) = container {
        let own = namespace_options(field, Some(c))?;
        if c.userns_options.is_some() && own.user != pod.user {
            return Err(invalid(
                &format!("{field}.userns_options"),
                "differs from the pod's user namespace options",
            ));
        }
        ns.pid = own.pid;
        ns.target_id = own.target_id;
    } else if ns.pid == NamespaceMode::Target {
        // A pod-level TARGET has no container to point at.
        ns.pid = NamespaceMode::Pod;
        ns.target_id = None;
    }
    Ok(ns)
}

/// uid and gid mappings of a user namespace.
pub(super) type IdMappings = (Vec<LinuxIdMapping>, Vec<LinuxIdMapping>);

/// The OCI namespaces and id mappings of a container: mount always new; network, IPC,
/// UTS (it follows the network) and the user namespace joined from the pod (no path);
/// PID per its mode (`Pod`/`Target` joined, `Container` new, `Node` absent); a cgroup
/// namespace of its own on cgroup v2 unless privileged.
pub(super) fn oci(
    ns: &NamespaceOptions,
    cgroup_ns: bool,
) -> (Vec<LinuxNamespace>, Option<IdMappings>) {
    let entry = |typ| {
        let mut n = LinuxNamespace::default();
        n.set_typ(typ);
        n
    };
    let mut out = vec![entry(LinuxNamespaceType::Mount)];
    if ns.network != NamespaceMode::Node {
        out.push(entry(LinuxNamespaceType::Network));
        out.push(entry(LinuxNamespaceType::Uts));
    }
    if ns.ipc != NamespaceMode::Node {
        out.push(entry(LinuxNamespaceType::Ipc));
    }
    if ns.pid != NamespaceMode::Node {
        out.push(entry(LinuxNamespaceType::Pid));
    }
    if cgroup_ns {
        out.push(entry(LinuxNamespaceType::Cgroup));
    }
    let mappings = ns.user.as_ref().map(|u| {
        out.push(entry(LinuxNamespaceType::User));
        let oci = |m: &[IdMapping]| {
            m.iter()
                .filter_map(|m| {
                    // The builder has no required field: it cannot fail.
                    LinuxIdMappingBuilder::default()
                        .host_id(m.host_id)
                        .container_id(m.container_id)
                        .size(m.length)
                        .build()
                        .ok()
                })
                .collect::<Vec<_>>()
        };
        (oci(&u.uids), oci(&u.gids))
    });
    (out, mappings)
}

fn mode(field: &str, raw: i32) -> runtimes::Result<NamespaceMode> {
    match CriMode::try_from(raw) {
        Ok(CriMode::Pod) => Ok(NamespaceMode::Pod),
        Ok(CriMode::Container) => Ok(NamespaceMode::Container),
        Ok(CriMode::Node) => Ok(NamespaceMode::Node),
        Ok(CriMode::Target) => Ok(NamespaceMode::Target),
        Err(_) => Err(invalid(field, format!("unknown namespace mode {raw}"))),
    }
}

/// One mapping, mapping container id 0: a pod's files are owned by its root, and the
/// rootfs and volumes are remapped with this single range.
fn mappings(field: &str, cri: &[CriIdMapping]) -> runtimes::Result<Vec<IdMapping>> {
    let [m] = cri else {
        return Err(invalid(
            field,
            format!(
                "exactly one mapping is supported with mode POD, got {}",
                cri.len()
            ),
        ));
    };
    if m.container_id != 0 {
        return Err(invalid(
            field,
            format!(
                "container id 0 must be mapped (the mapping starts at {})",
                m.container_id
            ),
        ));
    }
    if m.length == 0 {
        return Err(invalid(field, "mapping length must be at least 1"));
    }
    if m.host_id.checked_add(m.length - 1).is_none() {
        return Err(invalid(
            field,
            format!(
                "host ids {}+{} overflow the 32-bit id space",
                m.host_id, m.length
            ),
        ));
    }
    Ok(vec![IdMapping {
        host_id: m.host_id,
        container_id: m.container_id,
        length: m.length,
    }])
}
