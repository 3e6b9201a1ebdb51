//! CRI `ContainerConfig` + the pod's `PodSandboxConfig` + the image config → the
//! [`ContainerSpec`] a backend creates the container from: an OCI runtime spec plus
//! the few things only the backend can finish (rootfs, pod namespace paths, user
//! resolution against the image's `/etc/passwd`). Pure: no I/O, unit-tested.

use std::path::{Path, PathBuf};

use k8s_cri::v1::{ContainerConfig, PodSandboxConfig};
use oci_spec::runtime::{ProcessBuilder, Spec};
use runtimes::types::{ContainerSpec, ImageInfo, UserRequest};

/// Facts about this host and agent the spec depends on.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// The agent's own `oom_score_adj`: lower requests are raised to it (no
    /// CAP_SYS_RESOURCE here, as containerd's `restrict_oom_score_adj`).
    pub oom_score_adj: i32,
    /// True when the kernel has AppArmor enabled.
    pub apparmor: bool,
    /// Where `localhost/<name>` seccomp profiles are looked up when relative.
    pub seccomp_profile_root: PathBuf,
}

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
}

/// Builds the container's spec, or says which field of the request is invalid.
pub fn build(input: &SpecInput<'_>) -> runtimes::Result<ContainerSpec> {
    let c = input.container;
    let image = &input.image.config;
    let args = command(c, &input.image.config.entrypoint, &image.cmd)?;
    let mut env = image.env.clone();
    for kv in &c.envs {
        let entry = format!("{}={}", kv.key, kv.value);
        match env
            .iter_mut()
            .find(|e| e.split('=').next() == Some(kv.key.as_str()))
        {
            Some(existing) => *existing = entry,
            None => env.push(entry),
        }
    }
    let cwd = if !c.working_dir.is_empty() {
        c.working_dir.clone()
    } else if !image.working_dir.is_empty() {
        image.working_dir.clone()
    } else {
        "/".to_string()
    };
    let process = ProcessBuilder::default()
        .args(args)
        .env(env)
        .cwd(cwd)
        .terminal(c.tty)
        .build()
        .map_err(invalid)?;
    let mut oci = Spec::default();
    oci.set_process(Some(process));
    Ok(ContainerSpec {
        image: c
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default(),
        image_id: input.image.id.clone(),
        oci,
        user: user_request(image.user.as_str()),
        log_path: log_path(&input.sandbox.log_directory, &c.log_path),
        stdin: c.stdin,
        stdin_once: c.stdin_once,
        tty: c.tty,
        stop_signal: (!image.stop_signal.is_empty()).then(|| image.stop_signal.clone()),
    })
}

/// The process arguments: the request's command replaces the image's entrypoint (and
/// then drops its cmd), the request's args replace the image's cmd.
fn command(
    c: &ContainerConfig,
    entrypoint: &[String],
    cmd: &[String],
) -> runtimes::Result<Vec<String>> {
    let (entry, args) = match (c.command.is_empty(), c.args.is_empty()) {
        (true, true) => (entrypoint.to_vec(), cmd.to_vec()),
        (true, false) => (entrypoint.to_vec(), c.args.clone()),
        (false, _) => (c.command.clone(), c.args.clone()),
    };
    let all: Vec<String> = entry.into_iter().chain(args).collect();
    if all.is_empty() {
        return Err(runtimes::Error::InvalidSpec(
            "CreateContainer: neither the request nor the image gives a command to run".into(),
        ));
    }
    Ok(all)
}

/// The image's `User` (`uid`, `name`, `uid:gid`, `name:group`) as a request.
fn user_request(user: &str) -> UserRequest {
    let (user, group) = user.split_once(':').unwrap_or((user, ""));
    let mut request = UserRequest::default();
    match user.parse::<u32>() {
        Ok(uid) => request.uid = Some(uid),
        Err(_) if !user.is_empty() => request.username = Some(user.to_string()),
        Err(_) => {}
    }
    match group.parse::<u32>() {
        Ok(gid) => request.gid = Some(gid),
        Err(_) if !group.is_empty() => request.group = Some(group.to_string()),
        Err(_) => {}
    }
    request
}

/// kubelet gives the container's log path relative to the pod's log directory.
fn log_path(directory: &str, relative: &str) -> Option<PathBuf> {
    (!directory.is_empty() && !relative.is_empty()).then(|| Path::new(directory).join(relative))
}

fn invalid(e: oci_spec::OciSpecError) -> runtimes::Error {
    runtimes::Error::InvalidSpec(format!("CreateContainer: {e}"))
}
