//! Exec, attach and port-forward through the real berth, its youki backend and the
//! pods' supervisors, driven by the real crictl (cri-tools v1.34.0, built by
//! `critest/tools`) over SPDY and WebSocket, as a user at a terminal would.
//!
//! Each test owns a node: a registry holding a busybox image, a berth home whose pods
//! get a bridge (`bs<tag>`), a free `10.X.0.0/16` (X in 90-99, away from the other
//! suites' ranges) and a cgroup parent of their own, and crictl pointed at its socket.
//! Dropping the node removes its pods first, so a failed test leaves no container.

mod attach;
mod exec;
mod leaks;
mod port_forward;
mod restart;
mod validation;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use berth_testkit::host;
use berth_testkit::images::busybox_registry;
use berth_testkit::servers::Registry;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tonic::transport::Channel;

use crate::{pull, Berth, Home};

#[path = "../../streaming/crictl.rs"]
#[allow(dead_code)]
mod crictl;
#[path = "../../streaming/pty.rs"]
#[allow(dead_code)]
mod pty;

pub use crictl::Crictl;
pub use pty::PtyClient;

/// Both transports crictl speaks (`crictl exec -r …`).
pub const TRANSPORTS: [&str; 2] = ["spdy", "websocket"];

/// How long one interactive step may take.
pub const WAIT: Duration = Duration::from_secs(20);

/// What one container runs and how.
#[derive(Clone, Default)]
pub struct Ctr<'a> {
    pub name: &'a str,
    pub command: &'a [&'a str],
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
}

/// A container that only sleeps: something to exec into.
pub const SLEEPER: Ctr = Ctr {
    name: "app",
    command: &["sleep", "3600"],
    stdin: false,
    stdin_once: false,
    tty: false,
};

/// One test's node: berth serving pods on a network of their own.
pub struct Node {
    pub berth: Berth,
    pub crictl: Crictl,
    pub client: RuntimeServiceClient<Channel>,
    pub image: String,
    home: Home,
    tag: String,
    /// The pods run on the host's network, by name.
    host_pods: Vec<String>,
    bridge: String,
    cgroup_parent: String,
    _registry: Registry,
}

impl Node {
    /// Starts berth and pulls the busybox image through it.
    pub async fn start() -> Result<Node> {
        Node::start_with("").await
    }

    /// [`Node::start`] with `extra` (YAML lines) at the top level of berth's config.
    pub async fn start_with(extra: &str) -> Result<Node> {
        anyhow::ensure!(
            nix::unistd::geteuid().is_root(),
            "these tests run pods: run as root"
        );
        let (registry, image) = busybox_registry().await;
        let tag = format!("{:08x}", host::random());
        let (bridge, cgroup_parent) = (format!("bs{tag}"), format!("/berth-streams/{tag}"));
        let network = format!(
            "  default_bridge: {bridge}\n  default_subnet: 10.{}.0.0/16\n",
            host::free_subnet_octet(90..100)
        );
        let extra = format!(
            "cgroup_parent: {cgroup_parent}\nregistries:\n  insecure: [\"{}\"]\n{extra}",
            registry.addr
        );
        let home = Home::with_node(&format!("streams-{tag}"), &network, &extra)?;
        let berth = home.start().await?;
        pull(&mut berth.images().await?, &image).await?;
        let crictl = Crictl::new(home.dir.path(), &home.socket());
        let client = berth.runtime().await?;
        Ok(Node {
            image,
            berth,
            crictl,
            client,
            home,
            tag,
            host_pods: Vec::new(),
            bridge,
            cgroup_parent,
            _registry: registry,
        })
    }

    /// The home's directory.
    pub fn dir(&self) -> &Path {
        self.home.dir.path()
    }

    /// Runs a pod named `name` (on the host's network when `host_network`).
    pub async fn pod(&mut self, name: &str, host_network: bool) -> Result<String> {
        if host_network {
            self.host_pods.push(name.to_string());
        }
        let config = self.pod_config(name);
        let answer = self
            .client
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await?;
        Ok(answer.into_inner().pod_sandbox_id)
    }

    fn pod_config(&self, name: &str) -> PodSandboxConfig {
        let network = if self.host_pods.iter().any(|p| p == name) {
            NamespaceMode::Node
        } else {
            NamespaceMode::Pod
        };
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: format!("{name}-{}", self.tag),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: self.dir().join("logs").join(name).display().to_string(),
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: network as i32,
                        pid: NamespaceMode::Container as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Creates and starts `ctr` in the pod `pod` (named `pod_name`); its id.
    pub async fn run(&mut self, pod: &str, pod_name: &str, ctr: &Ctr<'_>) -> Result<String> {
        let id = self.create(pod, pod_name, ctr).await?;
        self.client
            .start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await?;
        Ok(id)
    }

    /// Creates `ctr` in the pod `pod` (named `pod_name`) without starting it; its id.
    pub async fn create(&mut self, pod: &str, pod_name: &str, ctr: &Ctr<'_>) -> Result<String> {
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: ctr.name.into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: self.image.clone(),
                ..Default::default()
            }),
            command: ctr.command.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{}.log", ctr.name),
            stdin: ctr.stdin,
            stdin_once: ctr.stdin_once,
            tty: ctr.tty,
            linux: Some(LinuxContainerConfig::default()),
            ..Default::default()
        };
        let id = self
            .client
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.into(),
                config: Some(config),
                sandbox_config: Some(self.pod_config(pod_name)),
            })
            .await?
            .into_inner()
            .container_id;
        Ok(id)
    }

    /// A pod `name` with one running container `ctr`: (pod id, container id).
    pub async fn pod_with(&mut self, name: &str, ctr: &Ctr<'_>) -> Result<(String, String)> {
        let pod = self.pod(name, false).await?;
        let id = self.run(&pod, name, ctr).await?;
        Ok((pod, id))
    }

    /// The CRI state of the container `id`.
    pub async fn state(&mut self, id: &str) -> Result<ContainerState> {
        let status = self
            .client
            .container_status(ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .context("no status")?;
        Ok(status.state())
    }

    /// The container log of `ctr` in the pod `pod_name`.
    pub fn log(&self, pod_name: &str, ctr: &str) -> String {
        let path = self
            .dir()
            .join("logs")
            .join(pod_name)
            .join(format!("{ctr}.log"));
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// The pods' supervisors (`berth shim` processes serving below this home).
    pub fn supervisors(&self) -> Vec<u32> {
        let marker = self.dir().join("run-state");
        processes()
            .into_iter()
            .filter(|(_, cmdline)| {
                cmdline.contains("--pod-dir") && cmdline.contains(&*marker.to_string_lossy())
            })
            .map(|(pid, _)| pid)
            .collect()
    }

    /// berth's pid.
    pub fn berth_pid(&self) -> u32 {
        self.berth.child.id()
    }

    /// Removes every pod (crictl, synchronously: also usable from `drop`).
    pub fn remove_pods(&self) {
        let config = self.dir().join("crictl.yaml");
        let _ = std::process::Command::new(crictl::binary())
            .arg("--config")
            .arg(&config)
            .args(["rmp", "--all", "--force"])
            .output();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.remove_pods();
        let _ = std::process::Command::new("ip")
            .args(["link", "delete", &self.bridge])
            .output();
        for controller in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let dir = controller
                .path()
                .join(self.cgroup_parent.trim_start_matches('/'));
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

/// Every process as (pid, command line with spaces).
pub fn processes() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Ok(raw) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
            out.push((pid, cmdline));
        }
    }
    out
}

/// The children of `pid` (from every thread's `children` list).
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let tasks = PathBuf::from(format!("/proc/{pid}/task"));
    for task in std::fs::read_dir(tasks).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    out.sort_unstable();
    out
}

/// The number of open descriptors and of threads of `pid`.
pub fn fds_and_threads(pid: u32) -> (usize, usize) {
    let count = |dir: String| std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    (
        count(format!("/proc/{pid}/fd")),
        count(format!("/proc/{pid}/task")),
    )
}

/// Sends a plain HTTP/1.0 GET for `/` to 127.0.0.1:`port`; the whole answer.
pub async fn http_get(port: u16) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    conn.write_all(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n")
        .await?;
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, conn.read_to_end(&mut answer))
        .await
        .context("no answer")??;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// Waits until `check` holds, for at most `limit`.
pub async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
