//! The whole spec: shape, annotations, the checks across concerns, critest requests.

use runtimes::types::NamespaceMode;

use super::*;
use crate::spec::annotations;

#[test]
fn a_default_container_gets_a_complete_spec() {
    let s = spec(&ctr(), &pod());
    assert_eq!(s.image, "busybox:latest");
    assert_eq!(s.image_id, "sha256:abc");
    let p = s.oci.process().as_ref().unwrap();
    assert_eq!(p.args().clone().unwrap(), vec!["top".to_string()]);
    assert_eq!((p.user().uid(), p.user().gid()), (0, 0));
    assert_eq!(p.rlimits(), &None);
    assert_eq!(p.terminal(), Some(false));
    let root = s.oci.root().as_ref().unwrap();
    assert_eq!(root.path(), Path::new("rootfs"));
    assert_eq!(s.oci.hostname(), &None);
    let linux = s.oci.linux().as_ref().unwrap();
    assert_eq!(linux.cgroups_path(), &None);
    assert_eq!(linux.sysctl(), &None);
    assert_eq!(s.namespaces.network, NamespaceMode::Pod);
    // It serializes to OCI JSON with no oci-spec defaults leaking in.
    let json = serde_json::to_value(&s.oci).unwrap();
    assert!(json["process"]["capabilities"].get("ambient").is_none());
    assert!(json["process"].get("rlimits").is_none());
    assert!(json.get("hostname").is_none());
    let env = json["process"]["env"].as_array().unwrap();
    assert!(!env.iter().any(|e| e == "TERM=xterm"));
}

#[test]
fn containerds_cri_annotations_are_set() {
    let s = spec(&ctr(), &pod());
    let a = s.oci.annotations().clone().unwrap();
    assert_eq!(a[annotations::CONTAINER_TYPE], "container");
    assert_eq!(a[annotations::CONTAINER_NAME], "app");
    assert_eq!(a[annotations::SANDBOX_NAME], "pod");
    assert_eq!(a[annotations::SANDBOX_NAMESPACE], "ns");
    assert_eq!(a[annotations::SANDBOX_UID], "uid-1");
    assert_eq!(a[annotations::IMAGE_NAME], "busybox:latest");
}

#[test]
fn a_privileged_container_needs_a_privileged_pod() {
    let c = ctr_with(|sc| sc.privileged = true);
    assert_eq!(
        invalid(&c, &pod()),
        "config.linux.security_context.privileged: a privileged container needs a privileged pod \
         (sandbox_config.linux.security_context.privileged)"
    );
    let s = spec(&c, &pod_with(|sc| sc.privileged = true));
    assert_eq!(bounding(&s).len(), 40);
}

#[test]
fn stdin_flags_are_passed_on() {
    let mut c = ctr();
    c.stdin = true;
    c.stdin_once = true;
    let s = spec(&c, &pod());
    assert!(s.stdin && s.stdin_once && !s.tty);
}

#[test]
fn a_host_network_privileged_pod_spec_as_critest_mount_propagation_sends() {
    let c = {
        let mut c = ctr_with(|sc| sc.privileged = true);
        c.mounts = vec![berth_proto::cri::v1::Mount {
            container_path: "/tmp/test/mnt".into(),
            host_path: "/tmp/test/mnt".into(),
            propagation: berth_proto::cri::v1::MountPropagation::PropagationBidirectional as i32,
            ..Default::default()
        }];
        c
    };
    let s = spec(&c, &pod_with(|sc| sc.privileged = true));
    assert_eq!(options(&s, "/tmp/test/mnt"), vec!["rbind", "rshared", "rw"]);
    let linux = s.oci.linux().as_ref().unwrap();
    assert_eq!(linux.rootfs_propagation().as_deref(), Some("shared"));
    assert_eq!(linux.seccomp(), &None);
    assert!(linux.masked_paths().as_ref().unwrap().is_empty());
}
