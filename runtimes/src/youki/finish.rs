//! Finishing a container's OCI spec with what only the backend knows (the agent
//! builds the rest from CRI, in `agent/src/spec`):
//!
//! - `root.path`: the container's overlay (`root.readonly` is the agent's);
//! - namespaces: the pod decides network, IPC and UTS (CRI shares them pod-wide): a
//!   `Node` mode removes the entry (the host's), a `Pod` mode points it at the pod's
//!   pin; UTS follows the network (a host-network pod has the host's hostname). A pod
//!   with a user namespace has every container join its pin (with the pod's id
//!   mappings in the spec, for the record: libcontainer writes none when joining). The
//!   `pid` entry joins the namespace the caller resolved from the container's PID mode
//!   (the pod's holder for `Pod`, the target's init for `Target`), or stays the
//!   container's own (`Container`) or absent (`Node`);
//! - `linux.cgroupsPath`, when empty: `<pod cgroup>/<container key>`;
//! - `process.user` from the resolved user;
//! - `process.oom_score_adj` raised to the supervisor's own (lowering needs
//!   CAP_SYS_RESOURCE, which berth does not have; containerd's `restrict_oom_score_adj`);
//! - bind mounts of the pod's `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf` and its
//!   shared `/dev/shm`, unless the request mounts those paths itself;
//! - `process.terminal` off until attach and a console exist (next issue);
//! - `process.noNewPrivileges: false` written as absent (a libcontainer quirk, see
//!   [`finish`]).

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceBuilder,
    LinuxNamespaceType, Mount, MountBuilder, RootBuilder, Spec, UserBuilder,
};

use crate::error::{Error, Result};
use crate::types::{IdMapping, NamespaceMode, NamespaceOptions, ResolvedUser};

/// What the pod contributes to its containers' specs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodParts {
    /// The pod's namespace options.
    pub namespaces: NamespaceOptions,
    /// Pinned network namespace (for `Pod` network).
    pub netns: Option<PathBuf>,
    /// Pinned IPC namespace (for `Pod` IPC).
    pub ipcns: Option<PathBuf>,
    /// Pinned UTS namespace (for a pod with its own network).
    pub utsns: Option<PathBuf>,
    /// Pinned user namespace (for a pod with one; it owns the pod's other pins).
    pub userns: Option<PathBuf>,
    /// The PID namespace the container joins (`/proc/<pid>/ns/pid` of the pod's
    /// holder or of a target container), if it joins one.
    pub pid_namespace: Option<PathBuf>,
    /// Directory with the pod's `hosts`, `hostname` and `resolv.conf`.
    pub etc: PathBuf,
    /// The pod's `/dev/shm` (a tmpfs), for `Pod` IPC.
    pub shm: PathBuf,
    /// The pod cgroup.
    pub cgroup: String,
}

/// What finishing decided, for the container's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// The container's cgroup.
    pub cgroup: String,
    /// True when it has a PID namespace of its own.
    pub own_pid_namespace: bool,
    /// Its working directory.
    pub cwd: String,
}

/// Finishes `spec` for the container `key` of the pod described by `pod`.
pub fn finish(
    spec: &mut Spec,
    key: &str,
    rootfs: &Path,
    user: &ResolvedUser,
    min_oom_score_adj: i32,
    pod: &PodParts,
) -> Result<Finished> {
    let readonly = spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false);
    spec.set_root(Some(
        RootBuilder::default()
            .path(rootfs.to_path_buf())
            .readonly(readonly)
            .build()
            .map_err(invalid)?,
    ));

    let mut process = spec.process().clone().unwrap_or_default();
    process.set_user(
        UserBuilder::default()
            .uid(user.uid)
            .gid(user.gid)
            .additional_gids(user.supplemental_groups.clone())
            .build()
            .map_err(invalid)?,
    );
    let oom = process.oom_score_adj().unwrap_or(min_oom_score_adj);
    process.set_oom_score_adj(Some(oom.max(min_oom_score_adj)));
    // libcontainer 0.7 loads seccomp while still privileged only when
    // `noNewPrivileges` is absent; an explicit `false` takes the late path, after the
    // capabilities are dropped, where seccomp_load fails with EACCES. Both mean "do
    // not set no_new_privs".
    if process.no_new_privileges() == Some(false) {
        process.set_no_new_privileges(None);
    }
    let cwd = process.cwd().display().to_string();
    spec.set_process(Some(process));

    let mut linux = spec.linux().clone().unwrap_or_default();
    let (namespaces, own_pid_namespace) =
        namespaces(linux.namespaces().clone().unwrap_or_default(), pod)?;
    linux.set_namespaces(Some(namespaces));
    if let Some(user) = &pod.namespaces.user {
        linux.set_uid_mappings(Some(id_mappings(&user.uids)?));
        linux.set_gid_mappings(Some(id_mappings(&user.gids)?));
    }
    let cgroup = match linux.cgroups_path() {
        Some(path) => path.display().to_string(),
        None => format!("{}/{key}", pod.cgroup.trim_end_matches('/')),
    };
    linux.set_cgroups_path(Some(PathBuf::from(&cgroup)));
    spec.set_linux(Some(linux));

    let mounts = pod_mounts(spec.mounts().clone().unwrap_or_default(), readonly, pod)?;
    spec.set_mounts(Some(mounts));
    Ok(Finished {
        cgroup,
        own_pid_namespace,
        cwd,
    })
}

fn invalid(e: oci_spec::OciSpecError) -> Error {
    Error::InvalidSpec(format!("CreateContainer: {e}"))
}

fn id_mappings(mappings: &[IdMapping]) -> Result<Vec<LinuxIdMapping>> {
    mappings
        .iter()
        .map(|m| {
            LinuxIdMappingBuilder::default()
                .container_id(m.container_id)
                .host_id(m.host_id)
                .size(m.length)
                .build()
                .map_err(invalid)
        })
        .collect()
}

fn ns(typ: LinuxNamespaceType, path: Option<&Path>) -> Result<LinuxNamespace> {
    let mut b = LinuxNamespaceBuilder::default().typ(typ);
    if let Some(p) = path {
        b = b.path(p.to_path_buf());
    }
    b.build().map_err(invalid)
}

/// The pinned namespace `pin`, or an error naming what the pod lacks.
fn pinned<'a>(pin: &'a Option<PathBuf>, what: &str) -> Result<&'a Path> {
    pin.as_deref().ok_or_else(|| {
        Error::FailedPrecondition(format!("the pod has no {what} namespace to join"))
    })
}

/// The container's namespaces; true when it gets a PID namespace of its own.
fn namespaces(
    requested: Vec<LinuxNamespace>,
    pod: &PodParts,
) -> Result<(Vec<LinuxNamespace>, bool)> {
    use LinuxNamespaceType as T;
    let mut out = Vec::new();
    let mut own_pid = false;
    for entry in requested {
        match entry.typ() {
            T::Network | T::Ipc | T::Uts => {} // the pod decides, below
            T::User if entry.path().is_none() => {
                if pod.userns.is_none() {
                    return Err(Error::FailedPrecondition(
                        "the container asks for the pod's user namespace, but the pod has none"
                            .into(),
                    ));
                }
            }
            T::Pid => match &pod.pid_namespace {
                Some(path) => out.push(ns(T::Pid, Some(path))?),
                None => {
                    own_pid = entry.path().is_none();
                    out.push(entry);
                }
            },
            _ => out.push(entry),
        }
    }
    if let Some(path) = &pod.pid_namespace {
        if !out.iter().any(|n| n.typ() == T::Pid) {
            out.push(ns(T::Pid, Some(path))?);
        }
    }
    if let Some(userns) = &pod.userns {
        out.retain(|n| n.typ() != T::User);
        out.push(ns(T::User, Some(userns))?);
    }
    let own_network = pod.namespaces.network != NamespaceMode::Node;
    if own_network {
        out.push(ns(T::Network, Some(pinned(&pod.netns, "network")?))?);
        out.push(ns(T::Uts, Some(pinned(&pod.utsns, "UTS")?))?);
    }
    if pod.namespaces.ipc != NamespaceMode::Node {
        out.push(ns(T::Ipc, Some(pinned(&pod.ipcns, "IPC")?))?);
    }
    if !out.iter().any(|n| n.typ() == T::Mount) {
        out.push(ns(T::Mount, None)?);
    }
    Ok((out, own_pid))
}

fn bind(source: &Path, destination: &str, readonly: bool) -> Result<Mount> {
    let mode = if readonly { "ro" } else { "rw" };
    MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(source)
        .options(vec!["rbind".into(), "rprivate".into(), mode.into()])
        .build()
        .map_err(invalid)
}

/// `mounts` with the pod's files and `/dev/shm` bound in where the request does not
/// mount those paths itself.
fn pod_mounts(mut mounts: Vec<Mount>, readonly: bool, pod: &PodParts) -> Result<Vec<Mount>> {
    let requested = |mounts: &[Mount], dst: &str| {
        mounts
            .iter()
            .any(|m| m.destination() == Path::new(dst) && m.typ().as_deref() == Some("bind"))
    };
    for name in ["hosts", "hostname", "resolv.conf"] {
        let dst = format!("/etc/{name}");
        if !requested(&mounts, &dst) {
            mounts.push(bind(&pod.etc.join(name), &dst, readonly)?);
        }
    }
    if !requested(&mounts, "/dev/shm") {
        // The default spec's private tmpfs gives way to the pod's (or the host's).
        mounts.retain(|m| m.destination() != Path::new("/dev/shm"));
        let shm = if pod.namespaces.ipc == NamespaceMode::Node {
            Path::new("/dev/shm")
        } else {
            pod.shm.as_path()
        };
        mounts.push(bind(shm, "/dev/shm", false)?);
    }
    Ok(mounts)
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{LinuxBuilder, ProcessBuilder};

    use super::*;

    fn pod() -> PodParts {
        PodParts {
            namespaces: NamespaceOptions::default(),
            netns: Some("/run/berth/netns/p".into()),
            ipcns: Some("/run/berth/ipcns/p".into()),
            utsns: Some("/run/berth/utsns/p".into()),
            userns: None,
            pid_namespace: None,
            etc: "/var/lib/berth/youki/pods/p/etc".into(),
            shm: "/run/berth/youki/pods/p/shm".into(),
            cgroup: "/berth/p".into(),
        }
    }

    fn user() -> ResolvedUser {
        ResolvedUser {
            uid: 1000,
            gid: 1000,
            supplemental_groups: vec![1000, 1234],
        }
    }

    fn spec() -> Spec {
        let mut spec = Spec::default();
        spec.set_process(Some(
            ProcessBuilder::default()
                .args(vec!["sh".to_string()])
                .cwd("/work")
                .terminal(true)
                .build()
                .unwrap(),
        ));
        spec.set_root(Some(
            RootBuilder::default().readonly(false).build().unwrap(),
        ));
        spec
    }

    fn finish_spec(spec: &mut Spec, pod: &PodParts) -> Finished {
        finish(
            spec,
            "web-app-0-on-n",
            Path::new("/merged"),
            &user(),
            0,
            pod,
        )
        .unwrap()
    }

    fn ns_of(spec: &Spec) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
        let mut v: Vec<_> = spec
            .linux()
            .as_ref()
            .unwrap()
            .namespaces()
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| (n.typ(), n.path().clone()))
            .collect();
        v.sort_by_key(|(t, _)| format!("{t:?}"));
        v
    }

    fn mount_of<'a>(spec: &'a Spec, dst: &str) -> Vec<&'a Mount> {
        spec.mounts()
            .as_ref()
            .unwrap()
            .iter()
            .filter(|m| m.destination() == Path::new(dst))
            .collect()
    }

    #[test]
    fn pod_namespaces_are_joined_by_path_and_pid_is_the_containers_own() {
        let mut s = spec();
        let f = finish_spec(&mut s, &pod());
        use LinuxNamespaceType as T;
        assert_eq!(
            ns_of(&s),
            vec![
                (T::Cgroup, None),
                (T::Ipc, Some("/run/berth/ipcns/p".into())),
                (T::Mount, None),
                (T::Network, Some("/run/berth/netns/p".into())),
                (T::Pid, None),
                (T::Uts, Some("/run/berth/utsns/p".into())),
            ]
        );
        assert!(f.own_pid_namespace);
        assert_eq!(f.cgroup, "/berth/p/web-app-0-on-n");
        assert_eq!(f.cwd, "/work");
    }

    #[test]
    fn host_network_and_ipc_leave_those_namespaces_out() {
        let mut p = pod();
        p.namespaces.network = NamespaceMode::Node;
        p.namespaces.ipc = NamespaceMode::Node;
        p.netns = None;
        p.utsns = None;
        p.ipcns = None;
        let mut s = spec();
        finish_spec(&mut s, &p);
        let types: Vec<_> = ns_of(&s).into_iter().map(|(t, _)| t).collect();
        use LinuxNamespaceType as T;
        assert_eq!(types, vec![T::Cgroup, T::Mount, T::Pid]);
        let shm = mount_of(&s, "/dev/shm");
        assert_eq!(shm.len(), 1);
        assert_eq!(shm[0].source().as_deref(), Some(Path::new("/dev/shm")));
    }

    #[test]
    fn a_joined_pid_namespace_is_set_on_the_entry() {
        let mut p = pod();
        p.pid_namespace = Some("/proc/4321/ns/pid".into());
        let mut s = spec();
        let f = finish_spec(&mut s, &p);
        assert!(!f.own_pid_namespace);
        assert!(ns_of(&s).contains(&(LinuxNamespaceType::Pid, Some("/proc/4321/ns/pid".into()))));
    }

    #[test]
    fn a_missing_pin_is_a_precondition_failure() {
        let mut p = pod();
        p.netns = None;
        let err = finish(&mut spec(), "k", Path::new("/m"), &user(), 0, &p).unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
    }

    #[test]
    fn a_user_namespace_pod_has_its_containers_join_its_pin() {
        use crate::types::UserNamespace;
        use LinuxNamespaceType as T;
        let range = IdMapping {
            host_id: 100000,
            container_id: 0,
            length: 65536,
        };
        let mut p = pod();
        p.namespaces.user = Some(UserNamespace {
            mode: NamespaceMode::Pod,
            uids: vec![range],
            gids: vec![range],
        });
        p.userns = Some("/run/berth/userns/p".into());
        let mut s = spec();
        let mut linux = s.linux().clone().unwrap_or_default();
        let mut requested = linux.namespaces().clone().unwrap_or_default();
        requested.push(ns(T::User, None).unwrap());
        linux.set_namespaces(Some(requested));
        s.set_linux(Some(linux.clone()));
        finish_spec(&mut s, &p);
        let users: Vec<_> = ns_of(&s)
            .into_iter()
            .filter(|(t, _)| *t == T::User)
            .collect();
        assert_eq!(users, [(T::User, Some("/run/berth/userns/p".into()))]);
        let linux_out = s.linux().as_ref().unwrap();
        for maps in [linux_out.uid_mappings(), linux_out.gid_mappings()] {
            let maps = maps.as_ref().unwrap();
            assert_eq!(
                maps.iter()
                    .map(|m| (m.container_id(), m.host_id(), m.size()))
                    .collect::<Vec<_>>(),
                [(0, 100000, 65536)]
            );
        }

        // A container that asks for a user namespace in a pod without one.
        let mut s = spec();
        s.set_linux(Some(linux));
        let err = finish(&mut s, "k", Path::new("/m"), &user(), 0, &pod()).unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
    }

    #[test]
    fn user_root_and_oom_are_set_and_terminal_kept() {
        let mut s = spec();
        s.process_mut()
            .as_mut()
            .unwrap()
            .set_oom_score_adj(Some(-500));
        s.process_mut()
            .as_mut()
            .unwrap()
            .set_no_new_privileges(Some(false));
        finish(&mut s, "k", Path::new("/merged"), &user(), 100, &pod()).unwrap();
        let process = s.process().as_ref().unwrap();
        assert_eq!(process.user().uid(), 1000);
        assert_eq!(process.user().additional_gids(), &Some(vec![1000, 1234]));
        assert_eq!(
            process.oom_score_adj(),
            Some(100),
            "raised to the supervisor's own"
        );
        assert_eq!(
            process.terminal(),
            Some(true),
            "the spec's terminal is kept"
        );
        assert_eq!(
            process.no_new_privileges(),
            None,
            "false is written as absent"
        );
        let root = s.root().as_ref().unwrap();
        assert_eq!(root.path(), Path::new("/merged"));
        assert_eq!(root.readonly(), Some(false));
        let mut higher = spec();
        higher
            .process_mut()
            .as_mut()
            .unwrap()
            .set_oom_score_adj(Some(1000));
        finish(&mut higher, "k", Path::new("/m"), &user(), 100, &pod()).unwrap();
        assert_eq!(
            higher.process().as_ref().unwrap().oom_score_adj(),
            Some(1000)
        );
    }

    #[test]
    fn pod_files_and_shm_are_bound_unless_requested() {
        let mut s = spec();
        let mut mounts = s.mounts().clone().unwrap();
        mounts.push(bind(Path::new("/kubelet/etc-hosts"), "/etc/hosts", false).unwrap());
        s.set_mounts(Some(mounts));
        finish_spec(&mut s, &pod());
        let hosts = mount_of(&s, "/etc/hosts");
        assert_eq!(hosts.len(), 1, "the request's own /etc/hosts stays alone");
        assert_eq!(
            hosts[0].source().as_deref(),
            Some(Path::new("/kubelet/etc-hosts"))
        );
        let resolv = mount_of(&s, "/etc/resolv.conf");
        assert_eq!(
            resolv[0].source().as_deref(),
            Some(Path::new("/var/lib/berth/youki/pods/p/etc/resolv.conf"))
        );
        let shm = mount_of(&s, "/dev/shm");
        assert_eq!(shm.len(), 1, "the default tmpfs is replaced");
        assert_eq!(shm[0].typ().as_deref(), Some("bind"));
        assert_eq!(
            shm[0].source().as_deref(),
            Some(Path::new("/run/berth/youki/pods/p/shm"))
        );
    }

    #[test]
    fn a_readonly_rootfs_gets_readonly_pod_files_and_an_explicit_cgroup_is_kept() {
        let mut s = spec();
        s.set_root(Some(RootBuilder::default().readonly(true).build().unwrap()));
        s.set_linux(Some(
            LinuxBuilder::default()
                .cgroups_path(PathBuf::from("/kubepods/pod1/c"))
                .build()
                .unwrap(),
        ));
        let f = finish_spec(&mut s, &pod());
        assert_eq!(f.cgroup, "/kubepods/pod1/c");
        let opts = mount_of(&s, "/etc/hostname")[0].options().clone().unwrap();
        assert!(opts.contains(&"ro".to_string()), "{opts:?}");
        assert_eq!(s.root().as_ref().unwrap().readonly(), Some(true));
    }
}
