//! CRI resources → OCI resources (CreateContainer and UpdateContainerResources).

use berth_proto::cri::v1::{HugepageLimit, LinuxContainerConfig, LinuxContainerResources};
use oci_spec::runtime::LinuxResources;

use super::*;
use crate::spec::resources;

fn r(f: impl FnOnce(&mut LinuxContainerResources)) -> LinuxContainerResources {
    let mut r = LinuxContainerResources::default();
    f(&mut r);
    r
}

fn ok(req: &LinuxContainerResources) -> LinuxResources {
    resources(req, &host()).unwrap()
}

fn err(req: &LinuxContainerResources) -> String {
    match resources(req, &host()) {
        Err(runtimes::Error::InvalidSpec(m)) => m,
        other => panic!("expected InvalidSpec, got {other:?}"),
    }
}

#[test]
fn nothing_set_is_all_none() {
    let out = ok(&LinuxContainerResources::default());
    assert_eq!(out.cpu(), &None);
    assert_eq!(out.memory(), &None);
    assert_eq!(out.hugepage_limits(), &None);
    assert_eq!(out.unified(), &None);
    assert_eq!(out.devices(), &None);
}

#[test]
fn cpu_fields_map_one_to_one() {
    let out = ok(&r(|r| {
        r.cpu_period = 100_000;
        r.cpu_quota = 50_000;
        r.cpu_shares = 512;
        r.cpuset_cpus = "0-1,3".into();
        r.cpuset_mems = "0".into();
    }));
    let cpu = out.cpu().clone().unwrap();
    assert_eq!(
        (cpu.period(), cpu.quota(), cpu.shares()),
        (Some(100_000), Some(50_000), Some(512))
    );
    assert_eq!(
        (cpu.cpus().as_deref(), cpu.mems().as_deref()),
        (Some("0-1,3"), Some("0"))
    );
    // -1 is "no quota".
    assert_eq!(
        ok(&r(|r| r.cpu_quota = -1)).cpu().clone().unwrap().quota(),
        Some(-1)
    );
}

#[test]
fn memory_limit_also_caps_swap_unless_a_swap_limit_is_given() {
    let mem = |req| ok(&req).memory().unwrap();
    let m = mem(r(|r| r.memory_limit_in_bytes = 15 << 20));
    assert_eq!((m.limit(), m.swap()), (Some(15 << 20), Some(15 << 20)));
    // critest's OOM spec: memory 15 MiB, memory+swap 15 MiB.
    let m = mem(r(|r| {
        r.memory_limit_in_bytes = 15 << 20;
        r.memory_swap_limit_in_bytes = 15 << 20;
    }));
    assert_eq!((m.limit(), m.swap()), (Some(15 << 20), Some(15 << 20)));
    let m = mem(r(|r| {
        r.memory_limit_in_bytes = 1 << 20;
        r.memory_swap_limit_in_bytes = -1;
    }));
    assert_eq!(m.swap(), Some(-1));
}

#[test]
fn swap_is_left_out_without_a_swap_controller() {
    let mut h = host();
    h.swap_controller = false;
    let out = resources(
        &r(|r| {
            r.memory_limit_in_bytes = 1 << 20;
            r.memory_swap_limit_in_bytes = 2 << 20;
        }),
        &h,
    )
    .unwrap();
    let m = out.memory().unwrap();
    assert_eq!((m.limit(), m.swap()), (Some(1 << 20), None));
}

#[test]
fn hugepages_need_the_controller_and_a_valid_size() {
    let req = r(|r| {
        r.hugepage_limits = vec![
            HugepageLimit {
                page_size: "2MB".into(),
                limit: 1 << 30,
            },
            HugepageLimit {
                page_size: "1GB".into(),
                limit: 0,
            },
        ]
    });
    let limits = ok(&req).hugepage_limits().clone().unwrap();
    assert_eq!(limits.len(), 2);
    assert_eq!(
        (limits[0].page_size().as_str(), limits[0].limit()),
        ("2MB", 1 << 30)
    );
    let mut h = host();
    h.hugetlb_controller = false;
    assert_eq!(resources(&req, &h).unwrap().hugepage_limits(), &None);
    for bad in ["2M", "MB", "0MB", "2mb", "1.5GB", ""] {
        let e = err(&r(|r| {
            r.hugepage_limits = vec![HugepageLimit {
                page_size: bad.into(),
                limit: 1,
            }]
        }));
        assert!(
            e.starts_with("resources.hugepage_limits[0].page_size"),
            "{bad}: {e}"
        );
    }
    let e = err(&r(|r| {
        r.hugepage_limits = vec![HugepageLimit {
            page_size: "2MB".into(),
            limit: u64::MAX,
        }]
    }));
    assert!(e.starts_with("resources.hugepage_limits[0].limit"), "{e}");
}

#[test]
fn unified_entries_are_cgroup_v2_file_names() {
    let out = ok(&r(|r| {
        r.unified.insert("memory.high".into(), "1000000".into());
    }));
    assert_eq!(out.unified().clone().unwrap()["memory.high"], "1000000");
    for key in ["", "memory", "../memory.max", ".x", "a/b.c"] {
        let e = err(&r(|r| {
            r.unified.insert(key.into(), "1".into());
        }));
        assert!(e.starts_with("resources.unified"), "{key}: {e}");
    }
}

#[test]
fn invalid_values_are_named() {
    let cases: Vec<(LinuxContainerResources, &str)> = vec![
        (
            r(|r| r.memory_limit_in_bytes = -1),
            "resources.memory_limit_in_bytes: must not be negative, got -1",
        ),
        (
            r(|r| r.cpu_period = -1),
            "resources.cpu_period: must not be negative, got -1",
        ),
        (
            r(|r| r.cpu_shares = -2),
            "resources.cpu_shares: must not be negative, got -2",
        ),
        (
            r(|r| r.cpu_quota = -2),
            "resources.cpu_quota: -2 is neither -1 (no limit) nor positive",
        ),
        (
            r(|r| r.memory_swap_limit_in_bytes = -2),
            "resources.memory_swap_limit_in_bytes: -2 is neither -1 (no limit) nor positive",
        ),
        (
            r(|r| {
                r.memory_limit_in_bytes = 2 << 20;
                r.memory_swap_limit_in_bytes = 1 << 20;
            }),
            "resources.memory_swap_limit_in_bytes: 1048576 is below memory_limit_in_bytes 2097152",
        ),
        (
            r(|r| r.cpuset_cpus = "0-".into()),
            "resources.cpuset_cpus: \"0-\" is not a list",
        ),
        (
            r(|r| r.cpuset_cpus = "3-1".into()),
            "resources.cpuset_cpus: \"3-1\" is not a list",
        ),
        (
            r(|r| r.cpuset_mems = "a".into()),
            "resources.cpuset_mems: \"a\" is not a list",
        ),
    ];
    for (req, want) in cases {
        let e = err(&req);
        assert!(e.starts_with(want), "{e} / {want}");
    }
}

#[test]
fn the_container_spec_carries_the_resources_and_the_device_rules() {
    let mut c = ctr();
    c.linux = Some(LinuxContainerConfig {
        resources: Some(r(|r| {
            r.memory_limit_in_bytes = 1 << 20;
            r.cpu_shares = 2;
        })),
        ..Default::default()
    });
    let s = spec(&c, &pod());
    let res = s.oci.linux().as_ref().unwrap().resources().clone().unwrap();
    assert_eq!(res.memory().unwrap().limit(), Some(1 << 20));
    assert_eq!(res.cpu().clone().unwrap().shares(), Some(2));
    assert!(res.devices().as_ref().is_some_and(|d| !d.is_empty()));
    // A negative memory limit fails CreateContainer with the field named.
    c.linux
        .as_mut()
        .unwrap()
        .resources
        .as_mut()
        .unwrap()
        .memory_limit_in_bytes = -5;
    assert_eq!(
        invalid(&c, &pod()),
        "resources.memory_limit_in_bytes: must not be negative, got -5"
    );
}
