//! Default mounts, request bind mounts, propagation, read-only and recursive read-only.

use berth_proto::cri::v1::{Mount as CriMount, MountPropagation as Prop};

use super::*;

fn bind(container: &str, host: &str) -> CriMount {
    CriMount {
        container_path: container.into(),
        host_path: host.into(),
        ..Default::default()
    }
}

fn with_mounts(mounts: Vec<CriMount>) -> ContainerConfig {
    let mut c = ctr();
    c.mounts = mounts;
    c
}

fn destinations(s: &ContainerSpec) -> Vec<String> {
    s.oci
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| m.destination().display().to_string())
        .collect()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn rootfs_propagation(s: &ContainerSpec) -> Option<String> {
    s.oci.linux().as_ref().unwrap().rootfs_propagation().clone()
}

#[test]
fn defaults_are_runcs_without_run_plus_cgroupfs() {
    let s = spec(&ctr(), &pod());
    assert_eq!(
        destinations(&s),
        strs(&[
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup"
        ])
    );
    assert_eq!(
        options(&s, "/sys"),
        strs(&["nosuid", "noexec", "nodev", "ro"])
    );
    assert!(options(&s, "/sys/fs/cgroup").contains(&"ro".to_string()));
    let shm = mount(&s, "/dev/shm").unwrap();
    assert_eq!(shm.typ().as_deref(), Some("tmpfs"));
    assert_eq!(rootfs_propagation(&s), None);
}

#[test]
fn privileged_gets_writable_sysfs_and_cgroupfs() {
    let c = ctr_with(|sc| sc.privileged = true);
    let s = spec(&c, &pod_with(|sc| sc.privileged = true));
    assert_eq!(
        options(&s, "/sys"),
        strs(&["nosuid", "noexec", "nodev", "rw"])
    );
    assert!(options(&s, "/sys/fs/cgroup").contains(&"rw".to_string()));
}

#[test]
fn each_propagation_maps_to_its_option_and_the_roots() {
    let cases = [
        (Prop::PropagationPrivate, "rprivate", None),
        (Prop::PropagationHostToContainer, "rslave", Some("slave")),
        (Prop::PropagationBidirectional, "rshared", Some("shared")),
    ];
    for (prop, option, root) in cases {
        let mut m = bind("/mnt/x", "/tmp/x");
        m.propagation = prop as i32;
        let s = spec(&with_mounts(vec![m]), &pod());
        let got = mount(&s, "/mnt/x").unwrap();
        assert_eq!(got.typ().as_deref(), Some("bind"));
        assert_eq!(got.source().as_deref(), Some(Path::new("/tmp/x")));
        assert_eq!(
            options(&s, "/mnt/x"),
            strs(&["rbind", option, "rw"]),
            "{prop:?}"
        );
        assert_eq!(rootfs_propagation(&s).as_deref(), root, "{prop:?}");
    }
}

#[test]
fn shared_wins_over_slave_for_the_root() {
    let mut a = bind("/a", "/tmp/a");
    a.propagation = Prop::PropagationBidirectional as i32;
    let mut b = bind("/b", "/tmp/b");
    b.propagation = Prop::PropagationHostToContainer as i32;
    for mounts in [vec![a.clone(), b.clone()], vec![b, a]] {
        let s = spec(&with_mounts(mounts), &pod());
        assert_eq!(rootfs_propagation(&s).as_deref(), Some("shared"));
    }
}

#[test]
fn readonly_and_recursive_readonly() {
    let mut ro = bind("/ro", "/tmp/ro");
    ro.readonly = true;
    let mut rro = bind("/rro", "/tmp/rro");
    rro.readonly = true;
    rro.recursive_read_only = true;
    // critest sets SELinux relabeling on its RRO mounts: ignored.
    rro.selinux_relabel = true;
    let s = spec(&with_mounts(vec![ro, rro]), &pod());
    assert_eq!(options(&s, "/ro"), strs(&["rbind", "rprivate", "ro"]));
    assert_eq!(
        options(&s, "/rro"),
        strs(&["rbind", "rprivate", "ro", "rro"])
    );
}

#[test]
fn recursive_readonly_mounts_critest_rejects_are_invalid() {
    let mut not_ro = bind("/mnt", "/tmp/h");
    not_ro.recursive_read_only = true;
    assert_eq!(
        invalid(&with_mounts(vec![not_ro]), &pod()),
        "config.mounts[0].recursive_read_only: needs readonly to be true"
    );
    for prop in [
        Prop::PropagationHostToContainer,
        Prop::PropagationBidirectional,
    ] {
        let mut m = bind("/mnt", "/tmp/h");
        m.readonly = true;
        m.recursive_read_only = true;
        m.propagation = prop as i32;
        assert_eq!(
            invalid(&with_mounts(vec![m]), &pod()),
            "config.mounts[0].recursive_read_only: needs propagation PROPAGATION_PRIVATE",
            "{prop:?}"
        );
    }
}

#[test]
fn parents_are_mounted_before_children() {
    let s = spec(
        &with_mounts(vec![
            bind("/a/b/c", "/h/1"),
            bind("/a", "/h/2"),
            bind("/x/y", "/h/3"),
            bind("/a/b", "/h/4"),
        ]),
        &pod(),
    );
    let d = destinations(&s);
    assert_eq!(&d[7..], &strs(&["/a", "/x/y", "/a/b", "/a/b/c"])[..]);
}

#[test]
fn a_request_mount_replaces_the_default_at_its_path() {
    let s = spec(
        &with_mounts(vec![bind("/dev/shm", "/run/shm"), bind("/sys/", "/sys")]),
        &pod(),
    );
    let d = destinations(&s);
    assert_eq!(d.iter().filter(|p| *p == "/dev/shm").count(), 1);
    assert_eq!(
        mount(&s, "/dev/shm").unwrap().typ().as_deref(),
        Some("bind")
    );
    assert_eq!(mount(&s, "/sys").unwrap().typ().as_deref(), Some("bind"));
    // A request /dev hides every default under it.
    let s = spec(&with_mounts(vec![bind("/dev", "/dev")]), &pod());
    assert_eq!(
        destinations(&s),
        strs(&["/proc", "/sys", "/sys/fs/cgroup", "/dev"])
    );
}

#[test]
fn paths_are_cleaned_and_image_volumes_skipped() {
    let mut image_volume = bind("/data", "");
    image_volume.image = Some(berth_proto::cri::v1::ImageSpec {
        image: "sha256:abc".into(),
        ..Default::default()
    });
    let s = spec(
        &with_mounts(vec![bind("/mnt//x/./", "/tmp/x/"), image_volume]),
        &pod(),
    );
    assert_eq!(
        mount(&s, "/mnt/x").unwrap().source().as_deref(),
        Some(Path::new("/tmp/x"))
    );
    assert!(mount(&s, "/data").is_none());
}

#[test]
fn bad_mounts_are_invalid_and_named() {
    let mut idmapped = bind("/m", "/h");
    idmapped.uid_mappings = vec![berth_proto::cri::v1::IdMapping {
        host_id: 1,
        container_id: 0,
        length: 1,
    }];
    let mut unknown = bind("/m", "/h");
    unknown.propagation = 7;
    let cases = [
        (
            vec![bind("/m", "")],
            "config.mounts[0].host_path: is empty (and no image is given)",
        ),
        (
            vec![bind("", "/h")],
            "config.mounts[0].container_path: is empty",
        ),
        (
            vec![bind("m", "/h")],
            "config.mounts[0].container_path: \"m\" is not an absolute path",
        ),
        (
            vec![bind("/m", "h")],
            "config.mounts[0].host_path: \"h\" is not an absolute path",
        ),
        (
            vec![bind("/m/../etc", "/h")],
            "config.mounts[0].container_path: \"/m/../etc\" must not contain '..'",
        ),
        (
            vec![bind("/", "/h")],
            "config.mounts[0].container_path: cannot be the container's root",
        ),
        (
            vec![bind("/m", "/a"), bind("/m/", "/b")],
            "config.mounts[1].container_path: /m is mounted twice",
        ),
        (
            vec![idmapped],
            "config.mounts[0]: idmapped mounts are not supported",
        ),
        (
            vec![unknown],
            "config.mounts[0].propagation: unknown propagation 7",
        ),
    ];
    for (mounts, want) in cases {
        assert_eq!(invalid(&with_mounts(mounts), &pod()), want);
    }
}
