//! Seccomp, AppArmor, masked and read-only paths, no_new_privs, read-only rootfs.

use berth_proto::cri::v1::{security_profile::ProfileType, Capability as CriCaps, SecurityProfile};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompOperator};

use super::*;
use crate::spec::security::{DEFAULT_MASKED, DEFAULT_READONLY};

/// critest's profile that blocks chmod.
const BLOCK_CHMOD: &str = r#"{
     "defaultAction": "SCMP_ACT_ALLOW",
     "syscalls": [ { "names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO" } ]
}"#;

fn typed(kind: ProfileType, localhost_ref: &str) -> SecurityProfile {
    SecurityProfile {
        profile_type: kind as i32,
        localhost_ref: localhost_ref.into(),
    }
}

fn with_seccomp(p: Option<SecurityProfile>) -> ContainerConfig {
    ctr_with(|sc| sc.seccomp = p)
}

fn with_seccomp_path(path: &str) -> ContainerConfig {
    #[allow(deprecated)]
    ctr_with(|sc| sc.seccomp_profile_path = path.into())
}

fn seccomp_of(s: &ContainerSpec) -> Option<LinuxSeccomp> {
    s.oci.linux().as_ref().unwrap().seccomp().clone()
}

fn lookup_with(path: &str, content: &str) -> FakeLookup {
    let mut l = FakeLookup::default();
    l.profiles.insert(PathBuf::from(path), content.to_string());
    l
}

/// The syscall names a profile allows without conditions.
fn allowed(p: &LinuxSeccomp) -> HashSet<String> {
    p.syscalls()
        .as_ref()
        .unwrap()
        .iter()
        .filter(|r| r.action() == LinuxSeccompAction::ScmpActAllow && r.args().is_none())
        .flat_map(|r| r.names().clone())
        .collect()
}

#[test]
fn unset_or_unconfined_seccomp_means_no_filter() {
    // critest: "should support nil profile, which is unconfined".
    assert_eq!(seccomp_of(&spec(&ctr(), &pod())), None);
    assert_eq!(seccomp_of(&spec(&with_seccomp(None), &pod())), None);
    assert_eq!(
        seccomp_of(&spec(
            &with_seccomp(Some(typed(ProfileType::Unconfined, ""))),
            &pod()
        )),
        None
    );
    assert_eq!(seccomp_of(&spec(&with_seccomp_path(""), &pod())), None);
    assert_eq!(
        seccomp_of(&spec(&with_seccomp_path("unconfined"), &pod())),
        None
    );
}

#[test]
fn an_empty_security_profile_is_runtime_default() {
    // critest's "seccomp default" sends SecurityProfile{} and expects Seccomp: 2.
    let s = spec(&with_seccomp(Some(SecurityProfile::default())), &pod());
    let p = seccomp_of(&s).expect("a filter");
    assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(p.default_errno_ret(), Some(1)); // EPERM
    for path in ["runtime/default", "docker/default"] {
        assert_eq!(
            seccomp_of(&spec(&with_seccomp_path(path), &pod())),
            Some(p.clone()),
            "{path}"
        );
    }
}

#[test]
fn runtime_default_blocks_namespace_creation_without_sys_admin() {
    let p = seccomp_of(&spec(
        &with_seccomp(Some(SecurityProfile::default())),
        &pod(),
    ))
    .unwrap();
    let names = allowed(&p);
    for ok in [
        "read",
        "execve",
        "chroot",
        "ptrace",
        "arch_prctl",
        "landlock_create_ruleset",
    ] {
        assert!(names.contains(ok), "{ok} allowed");
    }
    for blocked in [
        "mount",
        "unshare",
        "setns",
        "clone",
        "clone3",
        "reboot",
        "bpf",
        "process_vm_readv",
    ] {
        assert!(!names.contains(blocked), "{blocked} not allowed outright");
    }
    let rules = p.syscalls().clone().unwrap();
    let clone = rules
        .iter()
        .find(|r| r.names() == &vec!["clone".to_string()])
        .unwrap();
    let arg = clone.args().as_ref().unwrap()[0];
    assert_eq!(
        (arg.index(), arg.value(), arg.value_two(), arg.op()),
        (
            0,
            0x7E02_0000,
            Some(0),
            LinuxSeccompOperator::ScmpCmpMaskedEq
        )
    );
    let clone3 = rules
        .iter()
        .find(|r| r.names() == &vec!["clone3".to_string()])
        .unwrap();
    assert_eq!(
        (clone3.action(), clone3.errno_ret()),
        (LinuxSeccompAction::ScmpActErrno, Some(38))
    ); // ENOSYS
    let personalities = rules
        .iter()
        .filter(|r| r.names() == &vec!["personality".to_string()])
        .count();
    assert_eq!(personalities, 5);
    assert_eq!(p.architectures().as_ref().unwrap().len(), 3);
}

#[test]
fn runtime_default_follows_the_capabilities() {
    let c = ctr_with(|sc| {
        sc.seccomp = Some(SecurityProfile::default());
        sc.capabilities = Some(CriCaps {
            add_capabilities: vec!["SYS_ADMIN".into(), "SYS_PTRACE".into()],
            drop_capabilities: vec!["SYS_CHROOT".into()],
            ..Default::default()
        });
    });
    let p = seccomp_of(&spec(&c, &pod())).unwrap();
    let names = allowed(&p);
    for ok in [
        "mount",
        "unshare",
        "setns",
        "clone",
        "clone3",
        "sethostname",
        "process_vm_readv",
        "kcmp",
    ] {
        assert!(names.contains(ok), "{ok} allowed with SYS_ADMIN/SYS_PTRACE");
    }
    assert!(!names.contains("chroot"), "chroot needs SYS_CHROOT");
    let rules = p.syscalls().clone().unwrap();
    assert!(
        !rules
            .iter()
            .any(|r| r.action() == LinuxSeccompAction::ScmpActErrno),
        "no clone3 ENOSYS rule"
    );
}

#[test]
fn localhost_profiles_are_read_from_the_node() {
    let lookup = lookup_with("/tmp/seccomp/block-chmod.json", BLOCK_CHMOD);
    let c = with_seccomp(Some(typed(
        ProfileType::Localhost,
        "/tmp/seccomp/block-chmod.json",
    )));
    let p = seccomp_of(&spec_on(&c, &pod(), &host(), &lookup)).unwrap();
    assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActAllow);
    let rule = &p.syscalls().clone().unwrap()[0];
    assert_eq!(
        rule.names(),
        &vec!["chmod".to_string(), "fchmodat".to_string()]
    );
    assert_eq!(rule.action(), LinuxSeccompAction::ScmpActErrno);
    // The deprecated string, and a path relative to the kubelet's seccomp root.
    let lookup = lookup_with("/var/lib/kubelet/seccomp/profiles/x.json", BLOCK_CHMOD);
    for c in [
        with_seccomp_path("localhost/profiles/x.json"),
        with_seccomp(Some(typed(
            ProfileType::Localhost,
            "localhost/profiles/x.json",
        ))),
    ] {
        assert_eq!(
            seccomp_of(&spec_on(&c, &pod(), &host(), &lookup)),
            Some(p.clone())
        );
    }
}

#[test]
fn bad_localhost_profiles_are_invalid() {
    let c = with_seccomp(Some(typed(ProfileType::Localhost, "/p.json")));
    let err = invalid(&c, &pod());
    assert_eq!(
        err,
        "config.linux.security_context.seccomp: cannot read seccomp profile /p.json: No such file or directory"
    );
    let err = invalid_on(
        &c,
        &pod(),
        &host(),
        &lookup_with("/p.json", "{\"syscalls\": []}"),
    );
    assert!(err.contains("is not valid OCI seccomp JSON"), "{err}");
    let unknown = SecurityProfile {
        profile_type: 9,
        ..Default::default()
    };
    let sc = "config.linux.security_context";
    let cases = [
        (
            with_seccomp(Some(typed(ProfileType::Localhost, ""))),
            format!("{sc}.seccomp.localhost_ref: is required when profile_type is Localhost"),
        ),
        (
            with_seccomp(Some(typed(ProfileType::RuntimeDefault, "/p.json"))),
            format!("{sc}.seccomp.localhost_ref: must only be set when profile_type is Localhost"),
        ),
        (
            with_seccomp_path("my-profile"),
            format!("{sc}.seccomp_profile_path: \"my-profile\" is not runtime/default, unconfined or localhost/<profile>"),
        ),
        (
            with_seccomp(Some(unknown)),
            format!("{sc}.seccomp.profile_type: unknown profile type 9"),
        ),
    ];
    for (c, want) in cases {
        assert_eq!(invalid(&c, &pod()), want);
    }
}

#[test]
fn privileged_ignores_seccomp_even_a_localhost_profile() {
    // critest: "should ignore a seccomp profile that blocks setting hostname when privileged".
    let c = ctr_with(|sc| {
        sc.privileged = true;
        sc.seccomp = Some(typed(ProfileType::Localhost, "/missing.json"));
    });
    let s = spec(&c, &pod_with(|sc| sc.privileged = true));
    assert_eq!(seccomp_of(&s), None);
}

#[test]
fn apparmor_is_ignored_without_apparmor_and_applied_with_it() {
    let c = |p: Option<SecurityProfile>, privileged: bool| {
        ctr_with(|sc| {
            sc.apparmor = p;
            sc.privileged = privileged;
        })
    };
    let profile_of = |c: &ContainerConfig, apparmor: bool| {
        let mut h = host();
        h.apparmor = apparmor;
        let s = spec_on(
            c,
            &pod_with(|sc| sc.privileged = true),
            &h,
            &FakeLookup::default(),
        );
        s.oci.process().as_ref().unwrap().apparmor_profile().clone()
    };
    let local = Some(typed(ProfileType::Localhost, "my-profile"));
    assert_eq!(profile_of(&c(local.clone(), false), false), None);
    assert_eq!(profile_of(&c(None, false), false), None);
    assert_eq!(
        profile_of(&c(None, false), true).as_deref(),
        Some("berth-default")
    );
    assert_eq!(profile_of(&c(None, true), true), None);
    assert_eq!(
        profile_of(&c(Some(typed(ProfileType::Unconfined, "")), false), true),
        None
    );
    assert_eq!(
        profile_of(&c(local, true), true).as_deref(),
        Some("my-profile")
    );
    #[allow(deprecated)]
    let deprecated = ctr_with(|sc| sc.apparmor_profile = "localhost/other".into());
    assert_eq!(profile_of(&deprecated, true).as_deref(), Some("other"));
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|p| p.to_string()).collect()
}

fn paths(s: &ContainerSpec) -> (Vec<String>, Vec<String>) {
    let l = s.oci.linux().as_ref().unwrap();
    (
        l.masked_paths().clone().unwrap(),
        l.readonly_paths().clone().unwrap(),
    )
}

#[test]
fn masked_and_readonly_paths_default_and_are_overridden_by_the_request() {
    let (masked, readonly) = paths(&spec(&ctr(), &pod()));
    assert_eq!(
        (masked, readonly),
        (strings(DEFAULT_MASKED), strings(DEFAULT_READONLY))
    );
    // critest's MaskedPaths and ReadonlyPaths specs.
    let c = ctr_with(|sc| {
        sc.masked_paths = vec!["/bin/ls".into()];
        sc.readonly_paths = vec!["/tmp".into()];
    });
    assert_eq!(
        paths(&spec(&c, &pod())),
        (vec!["/bin/ls".to_string()], vec!["/tmp".to_string()])
    );
    let c = ctr_with(|sc| {
        sc.privileged = true;
        sc.masked_paths = vec!["/bin/ls".into()];
    });
    assert_eq!(
        paths(&spec(&c, &pod_with(|sc| sc.privileged = true))),
        (vec![], vec![])
    );
    let c = ctr_with(|sc| sc.readonly_paths = vec!["/ok".into(), "tmp".into()]);
    assert_eq!(
        invalid(&c, &pod()),
        "config.linux.security_context.readonly_paths[1]: \"tmp\" is not an absolute path"
    );
}

#[test]
fn no_new_privs_and_readonly_rootfs_follow_the_request() {
    let nnp = |s: &ContainerSpec| s.oci.process().as_ref().unwrap().no_new_privileges();
    let ro = |s: &ContainerSpec| s.oci.root().as_ref().unwrap().readonly();
    let s = spec(&ctr(), &pod());
    assert_eq!((nnp(&s), ro(&s)), (Some(false), Some(false)));
    let s = spec(
        &ctr_with(|sc| {
            sc.no_new_privs = true;
            sc.readonly_rootfs = true;
        }),
        &pod(),
    );
    assert_eq!((nnp(&s), ro(&s)), (Some(true), Some(true)));
}
