//! Mounts: the runc-like defaults every container gets, then the request's bind mounts,
//! parents before children.
//!
//! Each `bind` mount in the result comes from the request, with the host path exactly as
//! given: the backend must check it exists, resolve symlinks in it, and check the
//! propagation its options ask for (`rshared` needs the host mount holding the path to be
//! shared, `rslave` shared or slave), since all three need the host's filesystem.

use std::path::{Component, Path, PathBuf};

use berth_proto::cri::v1::{ContainerConfig, Mount as CriMount, MountPropagation};
use oci_spec::runtime::Mount;

use super::invalid;

/// `/dev/shm`: a placeholder tmpfs the backend replaces with the pod's shared one (or the
/// host's `/dev/shm` for a host-IPC pod).
pub const DEV_SHM: &str = "/dev/shm";

/// The mounts every container starts from (containerd's: runc's without `/run`, plus
/// `/sys/fs/cgroup`); sysfs and cgroupfs are read-only unless privileged.
fn defaults(privileged: bool) -> Vec<Mount> {
    let ro = if privileged { "rw" } else { "ro" };
    [
        ("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"][..]),
        (
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        (
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        (
            DEV_SHM,
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        (
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        ("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", ro]),
        (
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", ro],
        ),
    ]
    .into_iter()
    .map(|(dest, typ, source, options)| {
        mount(
            PathBuf::from(dest),
            typ,
            PathBuf::from(source),
            options.iter().map(|o| o.to_string()).collect(),
        )
    })
    .collect()
}

fn mount(destination: PathBuf, typ: &str, source: PathBuf, options: Vec<String>) -> Mount {
    let mut m = Mount::default();
    m.set_destination(destination);
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(source));
    m.set_options(Some(options));
    m
}

/// The mounts of the spec and the root's propagation (`shared` when a mount propagates
/// both ways, `slave` when one only receives, else none: the runtime's private default).
/// libcontainer takes `shared`/`slave` (not runc's `rshared`/`rslave`) and applies them
/// recursively.
pub(super) fn mounts(
    c: &ContainerConfig,
    privileged: bool,
) -> runtimes::Result<(Vec<Mount>, Option<String>)> {
    let mut requested = Vec::new();
    let mut propagation: Option<&str> = None;
    for (i, m) in c.mounts.iter().enumerate() {
        let field = format!("config.mounts[{i}]");
        let Some((dest, bind, root_propagation)) = bind_mount(&field, m)? else {
            continue;
        };
        if requested.iter().any(|(d, _): &(PathBuf, Mount)| *d == dest) {
            return Err(invalid(
                &format!("{field}.container_path"),
                format!("{} is mounted twice", dest.display()),
            ));
        }
        match (propagation, root_propagation) {
            (_, Some("shared")) => propagation = Some("shared"),
            (None, Some("slave")) => propagation = Some("slave"),
            _ => {}
        }
        requested.push((dest, bind));
    }
    // Parents first: a mount at /a/b must come after one at /a or it is hidden. The
    // sort is stable, so equal depths keep the request's order.
    requested.sort_by_key(|(dest, _)| dest.components().count());
    let has = |path: &Path| requested.iter().any(|(d, _)| d == path);
    let own_dev = has(Path::new("/dev"));
    let mut out: Vec<Mount> = defaults(privileged)
        .into_iter()
        .filter(|m| !has(m.destination()))
        .filter(|m| !(own_dev && m.destination().starts_with("/dev")))
        .collect();
    out.extend(requested.into_iter().map(|(_, m)| m));
    Ok((out, propagation.map(str::to_string)))
}

/// One request mount as an OCI bind mount, its clean destination and the root
/// propagation it needs; `None` for an image volume, which the backend mounts
/// (`ContainerSpec::image_volumes`, filled by CreateContainer).
fn bind_mount(
    field: &str,
    m: &CriMount,
) -> runtimes::Result<Option<(PathBuf, Mount, Option<&'static str>)>> {
    if m.host_path.is_empty() {
        if m.image.as_ref().is_some_and(|i| !i.image.is_empty()) {
            return Ok(None);
        }
        return Err(invalid(
            &format!("{field}.host_path"),
            "is empty (and no image is given)",
        ));
    }
    let dest = absolute(&format!("{field}.container_path"), &m.container_path)?;
    if dest == Path::new("/") {
        return Err(invalid(
            &format!("{field}.container_path"),
            "cannot be the container's root",
        ));
    }
    let source = absolute(&format!("{field}.host_path"), &m.host_path)?;
    if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
        return Err(invalid(field, "idmapped mounts are not supported"));
    }
    let (option, root) = match MountPropagation::try_from(m.propagation) {
        Ok(MountPropagation::PropagationPrivate) => ("rprivate", None),
        Ok(MountPropagation::PropagationHostToContainer) => ("rslave", Some("slave")),
        Ok(MountPropagation::PropagationBidirectional) => ("rshared", Some("shared")),
        Err(_) => {
            return Err(invalid(
                &format!("{field}.propagation"),
                format!("unknown propagation {}", m.propagation),
            ));
        }
    };
    if m.recursive_read_only {
        if !m.readonly {
            return Err(invalid(
                &format!("{field}.recursive_read_only"),
                "needs readonly to be true",
            ));
        }
        if root.is_some() {
            return Err(invalid(
                &format!("{field}.recursive_read_only"),
                "needs propagation PROPAGATION_PRIVATE",
            ));
        }
    }
    // SELinux relabeling is ignored: berth does not run with SELinux.
    let mut options = vec![
        "rbind".to_string(),
        option.to_string(),
        if m.readonly { "ro" } else { "rw" }.to_string(),
    ];
    if m.recursive_read_only {
        // libcontainer makes the whole tree read-only (mount_setattr AT_RECURSIVE).
        options.push("rro".to_string());
    }
    Ok(Some((
        dest.clone(),
        mount(dest, "bind", source, options),
        root,
    )))
}

/// An absolute path without `..`, cleaned of `.` and repeated or trailing slashes (a
/// host path of the request).
pub fn absolute(field: &str, path: &str) -> runtimes::Result<PathBuf> {
    if path.is_empty() {
        return Err(invalid(field, "is empty"));
    }
    if !path.starts_with('/') {
        return Err(invalid(field, format!("{path:?} is not an absolute path")));
    }
    if path.contains('\0') {
        return Err(invalid(field, format!("{path:?} contains a NUL byte")));
    }
    let mut clean = PathBuf::from("/");
    for part in Path::new(path).components() {
        match part {
            Component::Normal(p) => clean.push(p),
            Component::ParentDir => {
                return Err(invalid(field, format!("{path:?} must not contain '..'")));
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(clean)
}
