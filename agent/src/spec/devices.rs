//! Devices: the request's device nodes (a node, or every node under a directory) and the
//! device cgroup rules: deny everything, then runc's defaults and the requested nodes; a
//! privileged container gets every host device and no restriction.

use std::path::{Path, PathBuf};

use berth_proto::cri::v1::ContainerConfig;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

use super::host::{DeviceKind, HostDevice, HostLookup};
use super::invalid;

/// The device nodes and cgroup rules of the container.
pub(super) fn devices(
    c: &ContainerConfig,
    privileged: bool,
    lookup: &dyn HostLookup,
) -> runtimes::Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>)> {
    let mut nodes: Vec<LinuxDevice> = Vec::new();
    let mut rules = if privileged {
        vec![rule(true, None, None, None, "rwm")]
    } else {
        let mut rules = vec![rule(false, None, None, None, "rwm")];
        rules.extend(
            DEFAULT_ALLOWED
                .iter()
                .map(|&(kind, major, minor)| rule(true, Some(kind), Some(major), minor, "rwm")),
        );
        // Creating (not opening) any node is allowed, as runc does.
        rules.push(rule(true, Some(LinuxDeviceType::C), None, None, "m"));
        rules.push(rule(true, Some(LinuxDeviceType::B), None, None, "m"));
        rules
    };
    if privileged {
        let host = lookup.host_devices().map_err(|e| {
            runtimes::Error::io("listing the host's devices for a privileged container", e)
        })?;
        for d in &host {
            add(&mut nodes, node(&Path::new("/dev").join(&d.relative), d));
        }
    }
    for (i, d) in c.devices.iter().enumerate() {
        let field = format!("config.devices[{i}]");
        let permissions = permissions(&format!("{field}.permissions"), &d.permissions)?;
        let container_path = device_path(&format!("{field}.container_path"), &d.container_path)?;
        if d.host_path.is_empty() || !d.host_path.starts_with('/') {
            return Err(invalid(
                &format!("{field}.host_path"),
                format!("{:?} is not an absolute path", d.host_path),
            ));
        }
        let found = lookup.devices(Path::new(&d.host_path)).map_err(|e| {
            invalid(
                &format!("{field}.host_path"),
                format!("{}: {e}", d.host_path),
            )
        })?;
        for h in &found {
            let path = if h.relative.as_os_str().is_empty() {
                container_path.clone()
            } else {
                container_path.join(&h.relative)
            };
            add(&mut nodes, node(&path, h));
            if !privileged {
                rules.push(rule(
                    true,
                    Some(kind(h.kind)),
                    Some(h.major),
                    Some(h.minor),
                    &permissions,
                ));
            }
        }
    }
    Ok((nodes, rules))
}

/// runc's default allowed devices (`null`, `zero`, `full`, `tty`, `random`, `urandom`,
/// `console`, `/dev/pts/*`, `ptmx`, `net/tun`); `None` minor means any.
const DEFAULT_ALLOWED: [(LinuxDeviceType, i64, Option<i64>); 10] = [
    (LinuxDeviceType::C, 1, Some(3)),
    (LinuxDeviceType::C, 1, Some(5)),
    (LinuxDeviceType::C, 1, Some(7)),
    (LinuxDeviceType::C, 5, Some(0)),
    (LinuxDeviceType::C, 1, Some(8)),
    (LinuxDeviceType::C, 1, Some(9)),
    (LinuxDeviceType::C, 5, Some(1)),
    (LinuxDeviceType::C, 136, None),
    (LinuxDeviceType::C, 5, Some(2)),
    (LinuxDeviceType::C, 10, Some(200)),
];

fn rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow);
    r.set_typ(Some(typ.unwrap_or(LinuxDeviceType::A)));
    r.set_major(major);
    r.set_minor(minor);
    r.set_access(Some(access.to_string()));
    r
}

fn kind(k: DeviceKind) -> LinuxDeviceType {
    match k {
        DeviceKind::Char => LinuxDeviceType::C,
        DeviceKind::Block => LinuxDeviceType::B,
    }
}

fn node(path: &Path, h: &HostDevice) -> LinuxDevice {
    let mut d = LinuxDevice::default();
    d.set_path(path.to_path_buf());
    d.set_typ(kind(h.kind));
    d.set_major(h.major);
    d.set_minor(h.minor);
    d.set_file_mode(Some(h.mode));
    d.set_uid(Some(h.uid));
    d.set_gid(Some(h.gid));
    d
}

/// Adds `d`, replacing an earlier node at the same path (a request overrides a host
/// device of a privileged container; two nodes at one path would fail `mknod`).
fn add(nodes: &mut Vec<LinuxDevice>, d: LinuxDevice) {
    match nodes.iter_mut().find(|n| n.path() == d.path()) {
        Some(existing) => *existing = d,
        None => nodes.push(d),
    }
}

/// `r`, `w` and `m` in any order, each at most once; empty means all three.
fn permissions(field: &str, p: &str) -> runtimes::Result<String> {
    if p.is_empty() {
        return Ok("rwm".to_string());
    }
    let mut seen = String::new();
    for ch in p.chars() {
        if !"rwm".contains(ch) || seen.contains(ch) {
            return Err(invalid(
                field,
                format!("{p:?} is not a combination of r, w and m"),
            ));
        }
        seen.push(ch);
    }
    Ok(p.to_string())
}

/// A device path in the container: libcontainer creates nodes under `/dev` only.
fn device_path(field: &str, p: &str) -> runtimes::Result<PathBuf> {
    let path = Path::new(p);
    let clean = path.is_absolute()
        && path.starts_with("/dev")
        && path != Path::new("/dev")
        && !path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir));
    if !clean {
        return Err(invalid(
            field,
            format!("{p:?} must be an absolute path under /dev"),
        ));
    }
    Ok(path.to_path_buf())
}
