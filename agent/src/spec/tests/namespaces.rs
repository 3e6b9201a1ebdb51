//! Namespace options of pods and containers, user namespaces, the OCI namespace list.

use berth_proto::cri::v1::{
    IdMapping as CriIdMapping, NamespaceMode as Cri, NamespaceOption, UserNamespace as CriUserns,
};
use runtimes::types::{IdMapping, NamespaceMode, NamespaceOptions, UserNamespace};

use super::*;
use crate::spec::namespace_options;
use LinuxNamespaceType::{Cgroup, Ipc, Mount as Mnt, Network, Pid, User, Uts};

fn opts(network: Cri, pid: Cri, ipc: Cri) -> NamespaceOption {
    NamespaceOption {
        network: network as i32,
        pid: pid as i32,
        ipc: ipc as i32,
        ..Default::default()
    }
}

fn pod_ns(o: NamespaceOption) -> PodSandboxConfig {
    pod_with(|sc| sc.namespace_options = Some(o))
}

fn ctr_ns(o: NamespaceOption) -> ContainerConfig {
    ctr_with(|sc| sc.namespace_options = Some(o))
}

const F: &str = "f";

fn userns(mode: Cri, uids: Vec<CriIdMapping>, gids: Vec<CriIdMapping>) -> NamespaceOption {
    NamespaceOption {
        userns_options: Some(CriUserns {
            mode: mode as i32,
            uids,
            gids,
        }),
        ..Default::default()
    }
}

/// A POD user namespace mapping 0 → `host_id` for 100000 ids.
fn pod_userns(host_id: u32) -> NamespaceOption {
    let m = vec![map(0, host_id, 100000)];
    userns(Cri::Pod, m.clone(), m)
}

fn map(container_id: u32, host_id: u32, length: u32) -> CriIdMapping {
    CriIdMapping {
        container_id,
        host_id,
        length,
    }
}

#[test]
fn missing_options_mean_everything_per_pod() {
    assert_eq!(
        namespace_options(F, None).unwrap(),
        NamespaceOptions::default()
    );
    let s = spec(&ctr(), &pod());
    assert_eq!(namespace_types(&s), vec![Mnt, Network, Uts, Ipc, Pid]);
    assert_eq!(s.namespaces, NamespaceOptions::default());
}

#[test]
fn the_oci_list_follows_each_mode() {
    use Cri::{Container as C, Node as N, Pod as P};
    let cases: &[(NamespaceOption, &[LinuxNamespaceType])] = &[
        (opts(P, P, P), &[Mnt, Network, Uts, Ipc, Pid]),
        // Host network: host UTS too (UTS follows the network).
        (opts(N, P, P), &[Mnt, Ipc, Pid]),
        (opts(P, N, P), &[Mnt, Network, Uts, Ipc]),
        (opts(P, P, N), &[Mnt, Network, Uts, Pid]),
        (opts(P, C, P), &[Mnt, Network, Uts, Ipc, Pid]),
        (opts(N, N, N), &[Mnt]),
    ];
    for (o, want) in cases {
        let s = spec(&ctr_ns(o.clone()), &pod_ns(o.clone()));
        assert_eq!(namespace_types(&s), *want, "{o:?}");
    }
}

#[test]
fn network_and_ipc_are_the_pods_and_pid_the_containers() {
    use Cri::{Container as C, Node as N, Pod as P};
    // The container says POD network (the proto default) in a host-network pod: the
    // pod's namespaces are what exists.
    let s = spec(&ctr_ns(opts(P, C, P)), &pod_ns(opts(N, P, N)));
    assert_eq!(s.namespaces.network, NamespaceMode::Node);
    assert_eq!(s.namespaces.ipc, NamespaceMode::Node);
    assert_eq!(s.namespaces.pid, NamespaceMode::Container);
    // No container options: the pod's PID mode.
    let s = spec(&ctr(), &pod_ns(opts(P, N, P)));
    assert_eq!(s.namespaces.pid, NamespaceMode::Node);
}

#[test]
fn pid_target_needs_a_target_id_which_is_passed_on() {
    let mut o = opts(Cri::Pod, Cri::Target, Cri::Pod);
    let err = invalid(&ctr_ns(o.clone()), &pod());
    assert_eq!(
        err,
        "config.linux.security_context.namespace_options.target_id: is required when pid is TARGET"
    );
    o.target_id = "abc".into();
    let s = spec(&ctr_ns(o), &pod());
    assert_eq!(s.namespaces.pid, NamespaceMode::Target);
    assert_eq!(s.namespaces.target_id.as_deref(), Some("abc"));
    assert!(namespace_types(&s).contains(&Pid));
}

#[test]
fn container_or_target_network_and_ipc_are_invalid() {
    for (o, field) in [
        (opts(Cri::Container, Cri::Pod, Cri::Pod), "network"),
        (opts(Cri::Pod, Cri::Pod, Cri::Target), "ipc"),
    ] {
        let err = namespace_options(F, Some(&o)).unwrap_err().to_string();
        assert!(err.starts_with(&format!("f.{field}: ")), "{err}");
    }
    let o = NamespaceOption {
        pid: 9,
        ..Default::default()
    };
    assert_eq!(
        namespace_options(F, Some(&o)).unwrap_err().to_string(),
        "f.pid: unknown namespace mode 9"
    );
}

#[test]
fn a_pod_user_namespace_with_one_mapping_is_accepted() {
    let o = userns(
        Cri::Pod,
        vec![map(0, 1000, 100000)],
        vec![map(0, 2000, 65536)],
    );
    let want = UserNamespace {
        mode: NamespaceMode::Pod,
        uids: vec![IdMapping {
            host_id: 1000,
            container_id: 0,
            length: 100000,
        }],
        gids: vec![IdMapping {
            host_id: 2000,
            container_id: 0,
            length: 65536,
        }],
    };
    assert_eq!(
        namespace_options(F, Some(&o)).unwrap().user,
        Some(want.clone())
    );
    // The container gets a user namespace entry and the mappings.
    let s = spec(&ctr_ns(o.clone()), &pod_ns(o));
    assert!(namespace_types(&s).contains(&User));
    assert_eq!(s.namespaces.user, Some(want));
    let linux = s.oci.linux().as_ref().unwrap();
    let uid = &linux.uid_mappings().as_ref().unwrap()[0];
    assert_eq!(
        (uid.host_id(), uid.container_id(), uid.size()),
        (1000, 0, 100000)
    );
    let gid = &linux.gid_mappings().as_ref().unwrap()[0];
    assert_eq!(
        (gid.host_id(), gid.container_id(), gid.size()),
        (2000, 0, 65536)
    );
}

#[test]
fn node_user_namespace_is_none() {
    let o = userns(Cri::Node, vec![], vec![]);
    assert_eq!(namespace_options(F, Some(&o)).unwrap().user, None);
    let s = spec(&ctr_ns(o.clone()), &pod_ns(o));
    assert!(!namespace_types(&s).contains(&User));
    assert!(s.oci.linux().as_ref().unwrap().uid_mappings().is_none());
}

#[test]
fn user_namespace_requests_critest_rejects_are_invalid() {
    let one = || vec![map(0, 1000, 100000)];
    let cases = [
        // "should fail if more than one mapping provided"
        (
            userns(
                Cri::Pod,
                vec![map(0, 1000, 100000), map(0, 2000, 100000)],
                one(),
            ),
            "f.userns_options.uids: exactly one mapping",
        ),
        // "should fail if container ID 0 is not mapped"
        (
            userns(
                Cri::Pod,
                vec![map(1, 1000, 100000)],
                vec![map(1, 1000, 100000)],
            ),
            "f.userns_options.uids: container id 0 must be mapped",
        ),
        // "should fail with NamespaceMode_CONTAINER" / "_TARGET"
        (
            userns(Cri::Container, vec![], vec![]),
            "f.userns_options.mode: Container is not supported",
        ),
        (
            userns(Cri::Target, vec![], vec![]),
            "f.userns_options.mode: Target is not supported",
        ),
        (
            userns(Cri::Pod, vec![], vec![]),
            "f.userns_options.uids: exactly one mapping",
        ),
        (
            userns(Cri::Pod, one(), vec![]),
            "f.userns_options.gids: exactly one mapping",
        ),
        (
            userns(Cri::Node, one(), one()),
            "f.userns_options: mode NODE takes no uid or gid mappings",
        ),
        (
            userns(Cri::Pod, vec![map(0, 1000, 0)], one()),
            "f.userns_options.uids: mapping length must be at least 1",
        ),
        (
            userns(Cri::Pod, vec![map(0, u32::MAX, 2)], one()),
            "f.userns_options.uids: host ids",
        ),
    ];
    for (o, want) in cases {
        let err = namespace_options(F, Some(&o)).unwrap_err();
        assert!(matches!(err, runtimes::Error::InvalidSpec(_)));
        assert!(err.to_string().starts_with(want), "{err} / {want}");
    }
}

#[test]
fn a_container_user_namespace_must_match_the_pods() {
    let pod_o = pod_userns(1000);
    let other = pod_userns(5000);
    let err = invalid(&ctr_ns(other), &pod_ns(pod_o.clone()));
    assert!(
        err.ends_with("userns_options: differs from the pod's user namespace options"),
        "{err}"
    );
    // Without its own user namespace options, the container takes the pod's.
    let s = spec(
        &ctr_ns(opts(Cri::Pod, Cri::Container, Cri::Pod)),
        &pod_ns(pod_o),
    );
    assert!(s.namespaces.user.is_some());
}

#[test]
fn an_invalid_pod_user_namespace_fails_container_creation_too() {
    let bad = userns(Cri::Container, vec![], vec![]);
    let err = invalid(&ctr(), &pod_ns(bad));
    assert!(
        err.starts_with(
            "sandbox_config.linux.security_context.namespace_options.userns_options.mode"
        ),
        "{err}"
    );
}

#[test]
fn cgroup_namespace_only_on_cgroup_v2_and_not_privileged() {
    let mut h = host();
    h.cgroup_unified = true;
    let s = spec_on(&ctr(), &pod(), &h, &FakeLookup::default());
    assert!(namespace_types(&s).contains(&Cgroup));
    let c = ctr_with(|sc| sc.privileged = true);
    let s = spec_on(
        &c,
        &pod_with(|sc| sc.privileged = true),
        &h,
        &FakeLookup::default(),
    );
    assert!(!namespace_types(&s).contains(&Cgroup));
    // Hybrid (this host): none.
    assert!(!namespace_types(&spec(&ctr(), &pod())).contains(&Cgroup));
}
