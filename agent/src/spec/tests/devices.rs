//! Device nodes and the device cgroup.

use berth_proto::cri::v1::Device;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

use super::*;
use crate::spec::DeviceKind;

fn dev(relative: &str, kind: DeviceKind, major: i64, minor: i64) -> HostDevice {
    HostDevice {
        relative: PathBuf::from(relative),
        kind,
        major,
        minor,
        mode: 0o660,
        uid: 0,
        gid: 6,
    }
}

fn lookup() -> FakeLookup {
    let mut l = FakeLookup::default();
    l.devices
        .insert("/dev/fuse".into(), vec![dev("", DeviceKind::Char, 10, 229)]);
    l.devices.insert(
        "/dev/snd".into(),
        vec![
            dev("timer", DeviceKind::Char, 116, 33),
            dev("by-x/pcm", DeviceKind::Char, 116, 3),
        ],
    );
    l.devices
        .insert("/dev/loop0".into(), vec![dev("", DeviceKind::Block, 7, 0)]);
    l.host = vec![
        dev("null", DeviceKind::Char, 1, 3),
        dev("fuse", DeviceKind::Char, 10, 229),
    ];
    l
}

fn with_devices(devices: &[(&str, &str, &str)]) -> ContainerConfig {
    let mut c = ctr();
    c.devices = devices
        .iter()
        .map(|(container, host, perms)| Device {
            container_path: container.to_string(),
            host_path: host.to_string(),
            permissions: perms.to_string(),
        })
        .collect();
    c
}

fn nodes(s: &ContainerSpec) -> Vec<LinuxDevice> {
    s.oci.linux().as_ref().unwrap().devices().clone().unwrap()
}

fn rules(s: &ContainerSpec) -> Vec<LinuxDeviceCgroup> {
    let l = s.oci.linux().as_ref().unwrap();
    l.resources().as_ref().unwrap().devices().clone().unwrap()
}

fn rule_text(r: &LinuxDeviceCgroup) -> String {
    let n = |v: Option<i64>| v.map_or("*".to_string(), |v| v.to_string());
    format!(
        "{} {} {}:{} {}",
        if r.allow() { "allow" } else { "deny" },
        r.typ().map_or("a".to_string(), |t| t.as_str().to_string()),
        n(r.major()),
        n(r.minor()),
        r.access().clone().unwrap_or_default()
    )
}

#[test]
fn the_device_cgroup_denies_all_but_runcs_defaults() {
    let s = spec(&ctr(), &pod());
    assert!(nodes(&s).is_empty());
    let r: Vec<String> = rules(&s).iter().map(rule_text).collect();
    assert_eq!(r[0], "deny a *:* rwm");
    for want in [
        "allow c 1:3 rwm",
        "allow c 1:9 rwm",
        "allow c 136:* rwm",
        "allow c 10:200 rwm",
        "allow c *:* m",
        "allow b *:* m",
    ] {
        assert!(r.contains(&want.to_string()), "{want} in {r:?}");
    }
    assert_eq!(r.len(), 13);
}

#[test]
fn a_requested_device_becomes_a_node_and_an_allow_rule() {
    let s = spec_on(
        &with_devices(&[
            ("/dev/fuse", "/dev/fuse", "rw"),
            ("/dev/xvda", "/dev/loop0", ""),
        ]),
        &pod(),
        &host(),
        &lookup(),
    );
    let n = nodes(&s);
    assert_eq!(n.len(), 2);
    assert_eq!(n[0].path(), Path::new("/dev/fuse"));
    assert_eq!(
        (n[0].typ(), n[0].major(), n[0].minor()),
        (LinuxDeviceType::C, 10, 229)
    );
    assert_eq!(
        (n[0].file_mode(), n[0].uid(), n[0].gid()),
        (Some(0o660), Some(0), Some(6))
    );
    assert_eq!(
        (n[1].path().as_path(), n[1].typ()),
        (Path::new("/dev/xvda"), LinuxDeviceType::B)
    );
    let r: Vec<String> = rules(&s).iter().map(rule_text).collect();
    assert!(r.contains(&"allow c 10:229 rw".to_string()), "{r:?}");
    // Empty permissions mean all three.
    assert!(r.contains(&"allow b 7:0 rwm".to_string()), "{r:?}");
}

#[test]
fn a_requested_directory_brings_every_node_under_it() {
    let s = spec_on(
        &with_devices(&[("/dev/sound", "/dev/snd", "r")]),
        &pod(),
        &host(),
        &lookup(),
    );
    let paths: Vec<_> = nodes(&s).iter().map(|d| d.path().clone()).collect();
    assert_eq!(
        paths,
        vec![
            PathBuf::from("/dev/sound/timer"),
            PathBuf::from("/dev/sound/by-x/pcm")
        ]
    );
    let r: Vec<String> = rules(&s).iter().map(rule_text).collect();
    assert!(
        r.contains(&"allow c 116:33 r".to_string()) && r.contains(&"allow c 116:3 r".to_string())
    );
}

#[test]
fn bad_device_requests_are_invalid() {
    let cases = [
        (("/dev/fuse", "/dev/fuse", "rx"), "config.devices[0].permissions: \"rx\" is not a combination of r, w and m"),
        (("/dev/fuse", "/dev/fuse", "rr"), "config.devices[0].permissions: \"rr\" is not a combination of r, w and m"),
        (("/fuse", "/dev/fuse", "rw"), "config.devices[0].container_path: \"/fuse\" must be an absolute path under /dev"),
        (("/dev/../etc/x", "/dev/fuse", "rw"), "config.devices[0].container_path: \"/dev/../etc/x\" must be an absolute path under /dev"),
        (("/dev/fuse", "fuse", "rw"), "config.devices[0].host_path: \"fuse\" is not an absolute path"),
        (("/dev/gpu", "/dev/nvidia0", "rw"), "config.devices[0].host_path: /dev/nvidia0: No such file or directory"),
    ];
    for (d, want) in cases {
        assert_eq!(
            invalid_on(&with_devices(&[d]), &pod(), &host(), &lookup()),
            want
        );
    }
}

#[test]
fn privileged_gets_every_host_device_and_no_restriction() {
    let c = {
        let mut c = with_devices(&[("/dev/fuse", "/dev/loop0", "rw")]);
        c.linux = ctr_with(|sc| sc.privileged = true).linux;
        c
    };
    let s = spec_on(&c, &pod_with(|sc| sc.privileged = true), &host(), &lookup());
    let r: Vec<String> = rules(&s).iter().map(rule_text).collect();
    assert_eq!(r, vec!["allow a *:* rwm".to_string()]);
    let n = nodes(&s);
    assert_eq!(n.len(), 2);
    assert_eq!(n[0].path(), Path::new("/dev/null"));
    // The request's node replaces the host's at the same path.
    assert_eq!(
        (n[1].path().as_path(), n[1].typ()),
        (Path::new("/dev/fuse"), LinuxDeviceType::B)
    );
}
