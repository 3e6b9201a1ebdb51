//! Pod sysctls.

use berth_proto::cri::v1::{NamespaceMode as Cri, NamespaceOption};
use runtimes::types::{NamespaceMode, NamespaceOptions};

use super::*;
use crate::spec::sysctls;

fn pod_sysctls(pairs: &[(&str, &str)]) -> PodSandboxConfig {
    let mut p = pod();
    p.linux.get_or_insert_with(Default::default).sysctls = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    p
}

fn host_ns(network: bool, ipc: bool) -> NamespaceOptions {
    let mode = |host| {
        if host {
            NamespaceMode::Node
        } else {
            NamespaceMode::Pod
        }
    };
    NamespaceOptions {
        network: mode(network),
        ipc: mode(ipc),
        ..Default::default()
    }
}

#[test]
fn namespaced_sysctls_are_kept_by_dotted_name() {
    let p = pod_sysctls(&[
        ("net.ipv4.ip_forward", "1"),
        ("net/ipv4/conf/eno2.100/rp_filter", "0"),
        ("kernel.shm_rmid_forced", "1"),
        ("fs.mqueue.msg_max", "20"),
        ("kernel.domainname", "example.org"),
    ]);
    let got = sysctls(&p, &host_ns(false, false)).unwrap();
    let want: Vec<(&str, &str)> = vec![
        ("fs.mqueue.msg_max", "20"),
        ("kernel.domainname", "example.org"),
        ("kernel.shm_rmid_forced", "1"),
        ("net.ipv4.conf.eno2/100.rp_filter", "0"),
        ("net.ipv4.ip_forward", "1"),
    ];
    let got: Vec<(&str, &str)> = got.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(got, want);
    assert!(sysctls(&pod(), &host_ns(true, true)).unwrap().is_empty());
}

#[test]
fn sysctls_outside_the_pods_namespaces_are_invalid() {
    let cases = [
        (
            ("vm.swappiness", "1"),
            host_ns(false, false),
            "is not namespaced",
        ),
        (
            ("kernel.pid_max", "1"),
            host_ns(false, false),
            "is not namespaced",
        ),
        (
            ("net.core.somaxconn", "1"),
            host_ns(true, false),
            "shares with the node",
        ),
        (
            ("kernel.hostname", "x"),
            host_ns(true, false),
            "shares with the node",
        ),
        (
            ("kernel.msgmax", "1"),
            host_ns(false, true),
            "shares with the node",
        ),
        (
            ("net..x", "1"),
            host_ns(false, false),
            "is not a sysctl name",
        ),
        (
            ("net.ipv4.ip_forward", "1\n"),
            host_ns(false, false),
            "NUL or newline",
        ),
    ];
    for ((k, v), ns, want) in cases {
        let err = sysctls(&pod_sysctls(&[(k, v)]), &ns)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("config.linux.sysctls[{k:?}]: ")),
            "{err}"
        );
        assert!(err.contains(want), "{k}: {err}");
    }
}

#[test]
fn the_pod_namespace_options_feed_the_check() {
    let opts = NamespaceOption {
        network: Cri::Node as i32,
        ..Default::default()
    };
    let ns = crate::spec::namespace_options("f", Some(&opts)).unwrap();
    assert!(sysctls(&pod_sysctls(&[("net.ipv4.ip_forward", "1")]), &ns).is_err());
    assert!(sysctls(&pod_sysctls(&[("kernel.sem", "1 2 3 4")]), &ns).is_ok());
}
