//! Capabilities: defaults, add/drop with ALL, ambient, privileged.

use berth_proto::cri::v1::Capability as CriCaps;
use oci_spec::runtime::LinuxCapabilities;

use super::*;
use crate::spec::caps::DEFAULT;

fn with_caps(add: &[&str], drop: &[&str], ambient: &[&str]) -> ContainerConfig {
    let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
    ctr_with(|sc| {
        sc.capabilities = Some(CriCaps {
            add_capabilities: list(add),
            drop_capabilities: list(drop),
            add_ambient_capabilities: list(ambient),
        })
    })
}

fn caps_of(s: &ContainerSpec) -> LinuxCapabilities {
    s.oci
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .clone()
        .unwrap()
}

fn default_set() -> HashSet<Capability> {
    DEFAULT.iter().copied().collect()
}

#[test]
fn the_default_is_containerds_14_without_inheritable_or_ambient() {
    let caps = caps_of(&spec(&ctr(), &pod()));
    assert_eq!(caps.bounding().clone().unwrap(), default_set());
    assert_eq!(caps.effective().clone().unwrap(), default_set());
    assert_eq!(caps.permitted().clone().unwrap(), default_set());
    // oci-spec's builder default would put KILL, AUDIT_WRITE and NET_BIND_SERVICE here.
    assert_eq!(caps.inheritable(), &None);
    assert_eq!(caps.ambient(), &None);
    assert_eq!(default_set().len(), 14);
}

#[test]
fn add_and_drop_follow_containerds_order() {
    let all = crate::spec::caps::all(host().capabilities);
    let set = |v: &[Capability]| v.iter().copied().collect::<HashSet<_>>();
    let mut with_admin = default_set();
    with_admin.insert(Capability::NetAdmin);
    let mut without_raw = default_set();
    without_raw.remove(&Capability::NetRaw);
    let mut all_but_chown = all.clone();
    all_but_chown.remove(&Capability::Chown);
    let cases: Vec<(&[&str], &[&str], HashSet<Capability>)> = vec![
        (&["NET_ADMIN"], &[], with_admin.clone()),
        (&["net_admin"], &[], with_admin.clone()),
        (&["CAP_NET_ADMIN"], &[], with_admin),
        (&[], &["NET_RAW"], without_raw),
        (&["ALL"], &[], all.clone()),
        (&[], &["ALL"], HashSet::new()),
        (
            &["NET_BIND_SERVICE"],
            &["ALL"],
            set(&[Capability::NetBindService]),
        ),
        (&["ALL"], &["CHOWN"], all_but_chown),
        // add ALL then drop ALL: drop wins, as in containerd.
        (&["ALL"], &["all"], HashSet::new()),
    ];
    for (add, drop, want) in cases {
        let s = spec(&with_caps(add, drop, &[]), &pod());
        assert_eq!(bounding(&s), want, "add {add:?} drop {drop:?}");
        assert_eq!(caps_of(&s).effective().clone().unwrap(), want);
        assert_eq!(caps_of(&s).ambient(), &None);
    }
}

#[test]
fn all_means_the_capabilities_berth_holds() {
    // This host's agent lacks SYS_RESOURCE (bit 24).
    let s = spec(&with_caps(&["ALL"], &[], &[]), &pod());
    let b = bounding(&s);
    assert_eq!(b.len(), 40);
    assert!(!b.contains(&Capability::SysResource) && b.contains(&Capability::CheckpointRestore));
    let err = invalid(&with_caps(&["SYS_RESOURCE"], &[], &[]), &pod());
    assert_eq!(
        err,
        "config.linux.security_context.capabilities.add_capabilities[0]: capability \"SYS_RESOURCE\" \
         is not held by berth itself, so no container can have it"
    );
    // A 5.x kernel without PERFMON, BPF, CHECKPOINT_RESTORE, and an agent without KILL:
    // the default set loses KILL too.
    let mut h = host();
    h.capabilities = Some(((1 << 38) - 1) & !(1 << 5));
    let s = spec_on(
        &with_caps(&["ALL"], &[], &[]),
        &pod(),
        &h,
        &FakeLookup::default(),
    );
    assert_eq!(bounding(&s).len(), 37);
    let s = spec_on(&ctr(), &pod(), &h, &FakeLookup::default());
    assert_eq!(bounding(&s).len(), 13);
    assert!(!bounding(&s).contains(&Capability::Kill));
    // Unknown: everything oci-spec knows.
    assert_eq!(crate::spec::caps::all(None).len(), 41);
}

#[test]
fn an_unknown_capability_is_invalid_and_named() {
    let err = invalid(&with_caps(&["NET_ADMIN", "FLY"], &[], &[]), &pod());
    assert_eq!(
        err,
        "config.linux.security_context.capabilities.add_capabilities[1]: unknown capability \"FLY\""
    );
    let err = invalid(&with_caps(&[], &["CAP_NOPE"], &[]), &pod());
    assert!(err.contains("drop_capabilities[0]"), "{err}");
}

#[test]
fn ambient_capabilities_go_into_every_set() {
    let s = spec(&with_caps(&[], &[], &["NET_ADMIN"]), &pod());
    let caps = caps_of(&s);
    let one: HashSet<_> = [Capability::NetAdmin].into_iter().collect();
    assert_eq!(caps.ambient().clone().unwrap(), one);
    assert_eq!(caps.inheritable().clone().unwrap(), one);
    assert!(caps
        .permitted()
        .clone()
        .unwrap()
        .contains(&Capability::NetAdmin));
    assert!(bounding(&s).contains(&Capability::NetAdmin));
    // A drop removes it from every set, ambient included.
    let s = spec(&with_caps(&[], &["NET_ADMIN"], &["NET_ADMIN"]), &pod());
    assert!(!bounding(&s).contains(&Capability::NetAdmin));
    assert_eq!(caps_of(&s).ambient(), &None);
}

#[test]
fn privileged_gets_every_capability_and_ignores_drops() {
    let mut c = with_caps(&[], &["ALL"], &[]);
    c.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .privileged = true;
    let s = spec(&c, &pod_with(|sc| sc.privileged = true));
    assert_eq!(bounding(&s), crate::spec::caps::all(host().capabilities));
    assert_eq!(bounding(&s).len(), 40);
    assert_eq!(caps_of(&s).ambient(), &None);
}
