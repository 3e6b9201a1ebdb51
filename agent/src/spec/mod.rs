//! CRI `ContainerConfig` + the pod's `PodSandboxConfig` + the image config → the
//! [`ContainerSpec`] a backend creates the container from, as containerd's CRI plugin
//! builds it. Pure given its inputs: host facts come in [`HostFacts`], the two lookups a
//! request needs (a Localhost seccomp profile, device nodes) go through [`HostLookup`].
//! Every invalid field is an `InvalidSpec` error naming it.
//!
//! # What the backend finishes (the contract)
//! - `root.path` is `rootfs`: the backend points it at the container's rootfs.
//! - `process.user` is root: the backend resolves [`ContainerSpec::user`] against the
//!   rootfs's `/etc/passwd` and `/etc/group` and sets uid, gid and additional gids.
//! - Namespace entries without a `path` other than `mount` and `cgroup` join the pod's:
//!   `network`, `uts` and `ipc` the pod's pinned ones; `pid` per
//!   [`ContainerSpec::namespaces`]`.pid`: `Pod` the pod's PID namespace, `Target` the
//!   PID namespace of the container `namespaces.target_id` names (the agent replaces
//!   the CRI id there with the target's ContainerId), `Container` a new one (leave it);
//!   `user` the pod's user namespace, whose mappings are also in `linux.uidMappings` /
//!   `gidMappings`. An absent entry means the host's namespace.
//! - `bind` mounts are the request's, sources exactly as given: check each exists,
//!   resolve symlinks, and check the host mount is shared for `rshared` and shared or
//!   slave for `rslave`.
//! - `/dev/shm` is a tmpfs placeholder (unless the request mounts it): replace it with
//!   a bind of the pod's shared `/dev/shm`, or the host's when `namespaces.ipc` is
//!   `Node`. Bind the pod's `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`
//!   unless the request mounts those paths (read-only when `root.readonly`).
//! - `linux.cgroupsPath` is unset: the backend places the container under its pod.
//! - `process.oomScoreAdj` is already at least the agent's own.
//! - `hostname` is unset: the container shares the pod's UTS namespace, whose hostname
//!   is [`pod_hostname`].
//! - Pod sysctls are not in the container spec: the backend writes [`sysctls`] into the
//!   pod's namespaces.

mod caps;
mod devices;
mod host;
mod mounts;
mod namespaces;
mod process;
mod resources;
mod seccomp;
mod seccomp_data;
mod security;
mod sysctls;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};

use berth_proto::cri::v1::{ContainerConfig, PodSandboxConfig, Signal};
use oci_spec::runtime::{Capabilities, Linux, LinuxCapabilities, Process, Root, Spec, User};
use runtimes::types::{ContainerSpec, ImageInfo, NamespaceMode, NamespaceOptions};

pub use host::{DeviceKind, HostDevice, HostFacts, HostLookup, SystemLookup, KUBELET_SECCOMP_ROOT};
pub use mounts::{absolute, DEV_SHM};
pub use namespaces::namespace_options;
pub use resources::resources;
pub use security::DEFAULT_APPARMOR_PROFILE;
pub use sysctls::sysctls;

/// Everything the spec is built from.
pub struct SpecInput<'a> {
    /// The container's CRI config.
    pub container: &'a ContainerConfig,
    /// Its pod's CRI config.
    pub sandbox: &'a PodSandboxConfig,
    /// The image it runs.
    pub image: &'a ImageInfo,
    /// Host facts.
    pub host: &'a HostFacts,
    /// Host lookups: [`SystemLookup`] in the agent.
    pub lookup: &'a dyn HostLookup,
}

/// CRI annotations containerd puts on a container's spec.
pub mod annotations {
    /// `container` for an application container.
    pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
    /// The container's name (metadata).
    pub const CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
    /// The pod's name.
    pub const SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
    /// The pod's namespace.
    pub const SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
    /// The pod's uid.
    pub const SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
    /// The image as the request named it.
    pub const IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
}

/// Builds the container's spec, or says which field of the request is invalid.
pub fn build(input: &SpecInput<'_>) -> runtimes::Result<ContainerSpec> {
    let c = input.container;
    let host = input.host;
    let image = &input.image.config;
    let sc = c.linux.as_ref().and_then(|l| l.security_context.as_ref());
    let pod_sc = input
        .sandbox
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref());
    // The name and the image were checked at the edge (`cri/fields.rs`,
    // `requested_image`), before the image was looked up.
    let image_ref = c.image.as_ref().map(|i| i.image.as_str()).unwrap_or("");
    let name = c.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("");
    let privileged = sc.is_some_and(|s| s.privileged);
    if privileged && !pod_sc.is_some_and(|s| s.privileged) {
        return Err(invalid(
            "config.linux.security_context.privileged",
            "a privileged container needs a privileged pod \
             (sandbox_config.linux.security_context.privileged)",
        ));
    }
    let pod_namespaces = namespace_options(
        "sandbox_config.linux.security_context.namespace_options",
        pod_sc.and_then(|s| s.namespace_options.as_ref()),
    )?;
    let namespaces = namespaces::for_container(
        &pod_namespaces,
        "config.linux.security_context.namespace_options",
        sc.and_then(|s| s.namespace_options.as_ref()),
    )?;
    let hostname = pod_hostname(input.sandbox, &pod_namespaces, host);
    let user = process::user(sc, &image.user)?;

    let caps = caps::capabilities(sc, privileged, host.capabilities)?;
    let bounding = caps.bounding().clone().unwrap_or_default();
    let process = oci_process(input, privileged, caps, &hostname)?;
    let (mounts, rootfs_propagation) = mounts::mounts(c, privileged)?;
    let linux = oci_linux(
        input,
        privileged,
        &bounding,
        &namespaces,
        rootfs_propagation,
    )?;

    let mut root = Root::default();
    root.set_path(PathBuf::from("rootfs"));
    root.set_readonly(Some(sc.is_some_and(|s| s.readonly_rootfs)));

    let mut oci = Spec::default();
    oci.set_process(Some(process))
        .set_root(Some(root))
        .set_hostname(None)
        .set_mounts(Some(mounts))
        .set_annotations(Some(annotations(input, name, image_ref)))
        .set_linux(Some(linux));
    Ok(ContainerSpec {
        image: image_ref.to_string(),
        image_id: input.image.id.clone(),
        oci,
        user,
        log_path: log_path(&input.sandbox.log_directory, &c.log_path),
        stdin: c.stdin,
        stdin_once: c.stdin_once,
        tty: c.tty,
        stop_signal: stop_signal(c)
            .or_else(|| (!image.stop_signal.is_empty()).then(|| image.stop_signal.clone())),
        // Filled by CreateContainer, which resolves each image.
        image_volumes: Vec::new(),
        namespaces,
    })
}

/// The spec's `process`: what runs, as whom (root until the backend resolves
/// [`ContainerSpec::user`]), with which capabilities and confinement.
fn oci_process(
    input: &SpecInput<'_>,
    privileged: bool,
    caps: LinuxCapabilities,
    hostname: &str,
) -> runtimes::Result<Process> {
    let c = input.container;
    let image = &input.image.config;
    let linux = c.linux.as_ref();
    let sc = linux.and_then(|l| l.security_context.as_ref());
    let mut process = Process::default();
    process.set_terminal(Some(c.tty));
    process.set_user(User::default());
    process.set_args(Some(process::args(c, image)?));
    process.set_env(Some(process::env(c, image, hostname)?));
    process.set_cwd(PathBuf::from(process::cwd(c, image)?));
    process.set_capabilities(Some(caps));
    process.set_rlimits(None);
    process.set_no_new_privileges(Some(sc.is_some_and(|s| s.no_new_privs)));
    process.set_apparmor_profile(security::apparmor(sc, privileged, input.host)?);
    process.set_oom_score_adj(process::oom_score_adj(
        linux.and_then(|l| l.resources.as_ref()),
        input.host.oom_score_adj,
    )?);
    process.set_selinux_label(None);
    Ok(process)
}

/// The spec's `linux` section: namespaces and id mappings, resource limits and
/// devices, seccomp, and the masked and read-only paths.
fn oci_linux(
    input: &SpecInput<'_>,
    privileged: bool,
    bounding: &Capabilities,
    namespaces: &NamespaceOptions,
    rootfs_propagation: Option<String>,
) -> runtimes::Result<Linux> {
    let c = input.container;
    let host = input.host;
    let linux = c.linux.as_ref();
    let sc = linux.and_then(|l| l.security_context.as_ref());
    let (masked, readonly) = security::masked_and_readonly(sc, privileged)?;
    let seccomp = security::seccomp(sc, privileged, bounding, host, input.lookup)?;
    let (devices, device_rules) = devices::devices(c, privileged, input.lookup)?;
    let mut limits = match linux.and_then(|l| l.resources.as_ref()) {
        Some(r) => resources(r, host)?,
        None => resources(&Default::default(), host)?,
    };
    limits.set_devices(Some(device_rules));
    let (oci_namespaces, mappings) =
        namespaces::oci(namespaces, host.cgroup_unified && !privileged);

    let mut l = Linux::default();
    l.set_namespaces(Some(oci_namespaces));
    let (uids, gids) = mappings.unzip();
    l.set_uid_mappings(uids);
    l.set_gid_mappings(gids);
    l.set_sysctl(None);
    l.set_resources(Some(limits));
    l.set_cgroups_path(None);
    l.set_devices(Some(devices));
    l.set_seccomp(seccomp);
    l.set_rootfs_propagation(rootfs_propagation);
    l.set_masked_paths(Some(masked));
    l.set_readonly_paths(Some(readonly));
    l.set_mount_label(None);
    Ok(l)
}

/// The pod's hostname: the config's, else the node's for a host-network pod, else the
/// pod's name. The backend sets it in the pod's UTS namespace; containers see it as
/// `HOSTNAME`.
pub fn pod_hostname(
    sandbox: &PodSandboxConfig,
    namespaces: &NamespaceOptions,
    host: &HostFacts,
) -> String {
    if !sandbox.hostname.is_empty() {
        sandbox.hostname.clone()
    } else if namespaces.network == NamespaceMode::Node {
        host.hostname.clone()
    } else {
        sandbox
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default()
    }
}

fn annotations(input: &SpecInput<'_>, name: &str, image_ref: &str) -> HashMap<String, String> {
    let pod = input.sandbox.metadata.clone().unwrap_or_default();
    [
        (annotations::CONTAINER_TYPE, "container"),
        (annotations::CONTAINER_NAME, name),
        (annotations::SANDBOX_NAME, &pod.name),
        (annotations::SANDBOX_NAMESPACE, &pod.namespace),
        (annotations::SANDBOX_UID, &pod.uid),
        (annotations::IMAGE_NAME, image_ref),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// kubelet gives the container's log path relative to the pod's log directory.
fn log_path(directory: &str, relative: &str) -> Option<PathBuf> {
    (!directory.is_empty() && !relative.is_empty()).then(|| Path::new(directory).join(relative))
}

/// The `InvalidSpec` error for `field`.
fn invalid(field: &str, why: impl Display) -> runtimes::Error {
    runtimes::Error::InvalidSpec(format!("{field}: {why}"))
}

/// The pod spec's own stop signal (`lifecycle.stopSignal`, CRI's
/// `ContainerConfig.stop_signal`) by name, e.g. `SIGQUIT`; `None` leaves the image's.
fn stop_signal(c: &ContainerConfig) -> Option<String> {
    let signal = Signal::try_from(c.stop_signal).ok()?;
    let name = signal.as_str_name().strip_prefix("SIGNAL_")?;
    (signal != Signal::RuntimeDefault).then(|| name.to_string())
}
