//! Unit tests of the spec builder, one file per concern, with shared fixtures here: a
//! busybox-like image, a pod and a container as critest sends them, and a fake
//! [`HostLookup`].

mod build;
mod caps;
mod devices;
mod mounts;
mod namespaces;
mod process;
mod resources;
mod security;
mod sysctls;

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

use berth_proto::cri::v1::{
    ContainerConfig, ContainerMetadata, ImageSpec, LinuxContainerConfig,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    PodSandboxConfig, PodSandboxMetadata,
};
use oci_spec::runtime::{Capability, LinuxNamespaceType, Mount};
use runtimes::types::{ContainerSpec, ImageConfig, ImageInfo};

use super::{build, HostDevice, HostFacts, HostLookup, SpecInput};

/// A [`HostLookup`] answering from maps.
#[derive(Default)]
pub(super) struct FakeLookup {
    pub profiles: HashMap<PathBuf, String>,
    pub devices: HashMap<PathBuf, Vec<HostDevice>>,
    pub host: Vec<HostDevice>,
}

impl HostLookup for FakeLookup {
    fn seccomp_profile(&self, path: &Path) -> io::Result<String> {
        self.profiles
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "No such file or directory"))
    }

    fn devices(&self, path: &Path) -> io::Result<Vec<HostDevice>> {
        self.devices
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "No such file or directory"))
    }

    fn host_devices(&self) -> io::Result<Vec<HostDevice>> {
        Ok(self.host.clone())
    }
}

/// This host as the tests assume it: swap and hugetlb controllers, every capability
/// but SYS_RESOURCE (as here), the agent at oom_score_adj -500.
pub(super) fn host() -> HostFacts {
    HostFacts {
        oom_score_adj: -500,
        apparmor: false,
        seccomp_profile_root: PathBuf::from("/var/lib/kubelet/seccomp"),
        hostname: "node-1".into(),
        cgroup_unified: false,
        swap_controller: true,
        hugetlb_controller: true,
        capabilities: Some(0x1ff_feff_ffff),
    }
}

/// busybox-like: `Cmd ["sh"]`, a PATH, no user.
pub(super) fn image() -> ImageInfo {
    ImageInfo {
        id: "sha256:abc".into(),
        config: ImageConfig {
            os: "linux".into(),
            architecture: "amd64".into(),
            env: vec!["PATH=/usr/sbin:/usr/bin:/sbin:/bin".into()],
            cmd: vec!["sh".into()],
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A pod as critest's `CreatePodSandboxForContainer` makes it.
pub(super) fn pod() -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: "pod".into(),
            uid: "uid-1".into(),
            namespace: "ns".into(),
            attempt: 0,
        }),
        hostname: "pod-host".into(),
        log_directory: "/var/log/pods/ns_pod_uid-1".into(),
        linux: Some(LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

/// A pod with a security context changed by `f`.
pub(super) fn pod_with(f: impl FnOnce(&mut LinuxSandboxSecurityContext)) -> PodSandboxConfig {
    let mut p = pod();
    let mut sc = LinuxSandboxSecurityContext::default();
    f(&mut sc);
    p.linux
        .get_or_insert_with(Default::default)
        .security_context = Some(sc);
    p
}

/// A container as critest's default one: busybox, `top`.
pub(super) fn ctr() -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: "busybox:latest".into(),
            ..Default::default()
        }),
        command: vec!["top".into()],
        log_path: "app/0.log".into(),
        ..Default::default()
    }
}

/// A container with a security context changed by `f`.
pub(super) fn ctr_with(f: impl FnOnce(&mut LinuxContainerSecurityContext)) -> ContainerConfig {
    let mut c = ctr();
    let mut sc = LinuxContainerSecurityContext::default();
    f(&mut sc);
    c.linux = Some(LinuxContainerConfig {
        security_context: Some(sc),
        ..Default::default()
    });
    c
}

/// Builds with the default host, image and an empty lookup.
pub(super) fn spec(c: &ContainerConfig, p: &PodSandboxConfig) -> ContainerSpec {
    spec_on(c, p, &host(), &FakeLookup::default())
}

/// Builds with everything given.
pub(super) fn spec_on(
    c: &ContainerConfig,
    p: &PodSandboxConfig,
    h: &HostFacts,
    lookup: &FakeLookup,
) -> ContainerSpec {
    match try_spec(c, p, h, lookup) {
        Ok(s) => s,
        Err(e) => panic!("build failed: {e}"),
    }
}

pub(super) fn try_spec(
    c: &ContainerConfig,
    p: &PodSandboxConfig,
    h: &HostFacts,
    lookup: &FakeLookup,
) -> runtimes::Result<ContainerSpec> {
    build(&SpecInput {
        container: c,
        sandbox: p,
        image: &image(),
        host: h,
        lookup,
    })
}

/// The message of the `InvalidSpec` error building must fail with.
pub(super) fn invalid(c: &ContainerConfig, p: &PodSandboxConfig) -> String {
    invalid_on(c, p, &host(), &FakeLookup::default())
}

pub(super) fn invalid_on(
    c: &ContainerConfig,
    p: &PodSandboxConfig,
    h: &HostFacts,
    lookup: &FakeLookup,
) -> String {
    match try_spec(c, p, h, lookup) {
        Err(runtimes::Error::InvalidSpec(m)) => m,
        Err(other) => panic!("expected InvalidSpec, got {other:?}"),
        Ok(_) => panic!("expected InvalidSpec, the build succeeded"),
    }
}

/// The bounding set.
pub(super) fn bounding(s: &ContainerSpec) -> HashSet<Capability> {
    let caps = s
        .oci
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().clone());
    caps.and_then(|c| c.bounding().clone()).unwrap_or_default()
}

/// The namespace types of the spec with whether each has a path.
pub(super) fn namespace_types(s: &ContainerSpec) -> Vec<LinuxNamespaceType> {
    let linux = s.oci.linux().as_ref().expect("linux");
    let ns = linux.namespaces().as_ref().expect("namespaces");
    assert!(
        ns.iter().all(|n| n.path().is_none()),
        "no namespace has a path"
    );
    ns.iter().map(|n| n.typ()).collect()
}

/// The mount at `dest`.
pub(super) fn mount<'a>(s: &'a ContainerSpec, dest: &str) -> Option<&'a Mount> {
    s.oci
        .mounts()
        .as_ref()
        .expect("mounts")
        .iter()
        .find(|m| m.destination() == Path::new(dest))
}

/// The options of the mount at `dest`.
pub(super) fn options(s: &ContainerSpec, dest: &str) -> Vec<String> {
    mount(s, dest)
        .and_then(|m| m.options().clone())
        .unwrap_or_default()
}
