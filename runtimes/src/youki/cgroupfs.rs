//! A container's `/sys/fs/cgroup` on a cgroup v1 host, made of bind mounts berth
//! chooses instead of libcontainer's `cgroup` mount.
//!
//! libcontainer 0.7 (`mount_cgroup_v1`) reads `/proc/<pid>/cgroup` from the host's
//! procfs, where `<pid>` is its init's pid as numbered in the container's PID
//! namespace. In a pod-wide PID namespace the inits are 2, 3, 4, … there, so it reads
//! unrelated host processes and fails with "failed to prepare rootfs" at the first
//! such pid that is free on the host: the ~8th container of a pod. It also binds each
//! hierarchy read-write, whatever the mount asks. So the `cgroup` mount is replaced,
//! as runc lays it out: a read-only skeleton (one empty directory per hierarchy, and
//! links for co-mounted controllers, as the host has them) with the container's own
//! cgroup of each hierarchy bound onto it, read-only unless the mount is `rw`
//! (privileged). libcontainer has made those cgroups before its init mounts anything.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{Mount, MountBuilder, Spec};

use crate::error::{Error, IoContext, Result};

/// The hierarchies to show: directory name (the host mount point's, such as
/// `cpu,cpuacct`) → that mount point, once each.
fn hierarchies(mounts: &[(String, PathBuf)]) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for (_, point) in mounts {
        let Some(name) = point.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !out.iter().any(|(n, _)| n == name) {
            out.push((name.to_string(), point.clone()));
        }
    }
    out.sort();
    out
}

/// Makes the skeleton at `dir`: a directory per hierarchy, and for a co-mounted one
/// (`cpu,cpuacct`) a link per controller naming it. Idempotent.
fn make_skeleton(dir: &Path, hierarchies: &[(String, PathBuf)]) -> Result<()> {
    let ok_if_exists = |r: io::Result<()>| match r {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    };
    fs::create_dir_all(dir).io_context(|| format!("creating {}", dir.display()))?;
    for (name, _) in hierarchies {
        let sub = dir.join(name);
        ok_if_exists(fs::create_dir(&sub)).io_context(|| format!("creating {}", sub.display()))?;
    }
    for (name, _) in hierarchies.iter().filter(|(n, _)| n.contains(',')) {
        for controller in name.split(',') {
            if hierarchies.iter().any(|(n, _)| n == controller) {
                continue;
            }
            let link = dir.join(controller);
            ok_if_exists(std::os::unix::fs::symlink(name, &link))
                .io_context(|| format!("linking {}", link.display()))?;
        }
    }
    Ok(())
}

fn bind(source: PathBuf, destination: PathBuf, mode: &str) -> Result<Mount> {
    MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(source)
        .options(
            ["bind", "nosuid", "noexec", "nodev", mode]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .build()
        .map_err(|e| Error::InvalidSpec(format!("CreateContainer: {e}")))
}

/// The binds standing for the `cgroup` mount `m` of a container in `cgroup`.
fn binds(
    m: &Mount,
    hierarchies: &[(String, PathBuf)],
    rel: &Path,
    skeleton: &Path,
) -> Result<Vec<Mount>> {
    let options = m.options().clone().unwrap_or_default();
    let mode = if options.iter().any(|o| o == "rw") {
        "rw"
    } else {
        "ro"
    };
    let dest = m.destination();
    let mut out = vec![bind(skeleton.to_path_buf(), dest.clone(), "ro")?];
    for (name, point) in hierarchies {
        out.push(bind(point.join(rel), dest.join(name), mode)?);
    }
    Ok(out)
}

/// Replaces `spec`'s `cgroup` mounts with binds of the container's cgroup `cgroup` in
/// each v1 hierarchy of `mounts` (controller → host mount point) over a skeleton made
/// at `skeleton`. A spec without a `cgroup` mount is left as it is.
pub fn replace(
    spec: &mut Spec,
    mounts: &[(String, PathBuf)],
    cgroup: &str,
    skeleton: &Path,
) -> Result<()> {
    let Some(list) = spec.mounts().clone() else {
        return Ok(());
    };
    let is_cgroup = |m: &Mount| m.typ().as_deref() == Some("cgroup");
    if !list.iter().any(is_cgroup) {
        return Ok(());
    }
    let rel = Path::new(cgroup.trim_start_matches('/'));
    let below_root = rel.components().all(|c| matches!(c, Component::Normal(_)));
    if rel.as_os_str().is_empty() || !below_root {
        return Err(Error::InvalidSpec(format!(
            "CreateContainer: cgroup path {cgroup:?} must name a cgroup below the root"
        )));
    }
    let hierarchies = hierarchies(mounts);
    make_skeleton(skeleton, &hierarchies)?;
    let mut out = Vec::new();
    for m in list {
        if is_cgroup(&m) {
            out.extend(binds(&m, &hierarchies, rel, skeleton)?);
        } else {
            out.push(m);
        }
    }
    spec.set_mounts(Some(out));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cgroup_mount(mode: &str) -> Mount {
        MountBuilder::default()
            .destination("/sys/fs/cgroup")
            .typ("cgroup")
            .source("cgroup")
            .options(vec!["nosuid".into(), "noexec".into(), mode.into()])
            .build()
            .unwrap()
    }

    fn host() -> Vec<(String, PathBuf)> {
        [
            ("cpu", "/sys/fs/cgroup/cpu,cpuacct"),
            ("cpuacct", "/sys/fs/cgroup/cpu,cpuacct"),
            ("memory", "/sys/fs/cgroup/memory"),
        ]
        .iter()
        .map(|(c, p)| (c.to_string(), PathBuf::from(p)))
        .collect()
    }

    fn spec_with(mounts: Vec<Mount>) -> Spec {
        let mut spec = Spec::default();
        spec.set_mounts(Some(mounts));
        spec
    }

    #[test]
    fn the_cgroup_mount_becomes_read_only_binds_of_the_containers_own_cgroups() {
        let dir = tempfile::tempdir().unwrap();
        let skeleton = dir.path().join("cgroupfs");
        let mut spec = spec_with(vec![cgroup_mount("ro")]);
        replace(&mut spec, &host(), "/pods/p1/c1", &skeleton).unwrap();
        let mounts = spec.mounts().clone().unwrap();
        assert!(mounts.iter().all(|m| m.typ().as_deref() == Some("bind")));
        let shown: Vec<(String, String, bool)> = mounts
            .iter()
            .map(|m| {
                (
                    m.source().as_ref().unwrap().display().to_string(),
                    m.destination().display().to_string(),
                    m.options().as_ref().unwrap().contains(&"ro".to_string()),
                )
            })
            .collect();
        assert_eq!(
            shown,
            vec![
                (
                    skeleton.display().to_string(),
                    "/sys/fs/cgroup".into(),
                    true
                ),
                (
                    "/sys/fs/cgroup/cpu,cpuacct/pods/p1/c1".into(),
                    "/sys/fs/cgroup/cpu,cpuacct".into(),
                    true
                ),
                (
                    "/sys/fs/cgroup/memory/pods/p1/c1".into(),
                    "/sys/fs/cgroup/memory".into(),
                    true
                ),
            ]
        );
        assert!(skeleton.join("memory").is_dir() && skeleton.join("cpu,cpuacct").is_dir());
        for link in ["cpu", "cpuacct"] {
            assert_eq!(
                fs::read_link(skeleton.join(link)).unwrap(),
                Path::new("cpu,cpuacct")
            );
        }
        // Idempotent: a retried create finds the skeleton made.
        replace(
            &mut spec_with(vec![cgroup_mount("ro")]),
            &host(),
            "/x",
            &skeleton,
        )
        .unwrap();
    }

    #[test]
    fn privileged_gets_its_cgroups_writable_but_never_the_skeleton() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec_with(vec![cgroup_mount("rw")]);
        replace(&mut spec, &host(), "c", &dir.path().join("s")).unwrap();
        let modes: Vec<bool> = spec
            .mounts()
            .clone()
            .unwrap()
            .iter()
            .map(|m| m.options().as_ref().unwrap().contains(&"rw".to_string()))
            .collect();
        assert_eq!(modes, vec![false, true, true]);
    }

    #[test]
    fn specs_without_a_cgroup_mount_and_escaping_paths() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = spec_with(vec![]);
        replace(&mut spec, &host(), "c", &dir.path().join("s")).unwrap();
        assert!(spec.mounts().as_ref().unwrap().is_empty());
        assert!(!dir.path().join("s").exists());
        for bad in ["/", "/a/../../etc", ""] {
            let mut spec = spec_with(vec![cgroup_mount("ro")]);
            let err = replace(&mut spec, &host(), bad, &dir.path().join("s"));
            assert!(err.is_err(), "{bad:?}");
        }
    }
}
