//! Exec, attach and port-forward through the real berth, its youki backend and the
//! pods' supervisors, driven by the real crictl (cri-tools v1.34.0, built by
//! `critest/tools`) over SPDY and WebSocket, as a user at a terminal would.
//!
//! Each test owns a node: a [`World`] (registry, berth home, bridge, subnet, cgroup
//! parent, and its host sweep on drop) with berth started in it and crictl pointed at
//! its socket. Dropping the node removes its pods through crictl first, so a failed
//! test leaves no container even before the world's sweep.

mod attach;
mod exec;
mod leaks;
mod port_forward;
mod restart;
mod validation;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use berth_proto::cri::v1::runtime_service_client::RuntimeServiceClient;
use berth_proto::cri::v1::*;
use tonic::transport::Channel;

use crate::world::{self, World};
use crate::Berth;

pub use berth_testkit::crictl::{self, Crictl};
pub use berth_testkit::pty::PtyClient;

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

/// One test's node: berth serving pods in a [`World`] of their own.
pub struct Node {
    pub berth: Berth,
    pub crictl: Crictl,
    pub client: RuntimeServiceClient<Channel>,
    /// The pods run on the host's network, by name.
    host_pods: Vec<String>,
    /// The runtime handler pods are run on (`""`: youki).
    handler: String,
    /// The containerd serving `handler`, if any: purged after berth stopped.
    _containerd: Option<berth_testkit::containerd::Containerd>,
    /// Declared last: dropped (swept) after berth is stopped.
    pub world: World,
}

impl Node {
    /// Starts berth and pulls the busybox image through it.
    pub async fn start() -> Result<Node> {
        Node::start_with("").await
    }

    /// [`Node::start`] with `extra` (YAML lines) at the top level of berth's config.
    pub async fn start_with(extra: &str) -> Result<Node> {
        let world = World::with_config(extra).await?;
        let berth = world.start().await?;
        let crictl = Crictl::new(world.home.dir.path(), &world.home.socket());
        let client = berth.runtime().await?;
        Ok(Node {
            berth,
            crictl,
            client,
            host_pods: Vec::new(),
            handler: String::new(),
            _containerd: None,
            world,
        })
    }

    /// A node whose pods run on the `containerd` handler, served by a containerd of
    /// the node's own.
    pub async fn start_on_containerd() -> Result<Node> {
        let containerd = berth_testkit::containerd::Containerd::start();
        let extra = format!(
            "backends:\n  containerd:\n    handler: containerd\n    address: {}\n",
            containerd.socket().display()
        );
        let mut node = Node::start_with(&extra).await?;
        node.handler = "containerd".into();
        node._containerd = Some(containerd);
        Ok(node)
    }

    /// The home's directory.
    pub fn dir(&self) -> &Path {
        self.world.home.dir.path()
    }

    /// Runs a pod named `name` (on the host's network when `host_network`).
    pub async fn pod(&mut self, name: &str, host_network: bool) -> Result<String> {
        if host_network {
            self.host_pods.push(name.to_string());
        }
        let config = self.pod_config(name);
        if self.handler.is_empty() {
            return world::run_pod(&mut self.client, &config).await;
        }
        let request = RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: self.handler.clone(),
        };
        Ok(self
            .client
            .run_pod_sandbox(request)
            .await?
            .into_inner()
            .pod_sandbox_id)
    }

    /// The world's pod `name`, on the host's network if it was run there.
    fn pod_config(&self, name: &str) -> PodSandboxConfig {
        let mut config = self.world.pod(name, &[]);
        if self.host_pods.iter().any(|p| p == name) {
            let options = config
                .linux
                .as_mut()
                .and_then(|l| l.security_context.as_mut())
                .and_then(|c| c.namespace_options.as_mut())
                .expect("the world's pods have namespace options");
            options.network = NamespaceMode::Node as i32;
        }
        config
    }

    /// Creates and starts `ctr` in the pod `pod` (named `pod_name`); its id.
    pub async fn run(&mut self, pod: &str, pod_name: &str, ctr: &Ctr<'_>) -> Result<String> {
        let (pod_config, config) = (self.pod_config(pod_name), self.container_config(ctr));
        world::create_and_start(&mut self.client, pod, &pod_config, &config).await
    }

    /// Creates `ctr` in the pod `pod` (named `pod_name`) without starting it; its id.
    pub async fn create(&mut self, pod: &str, pod_name: &str, ctr: &Ctr<'_>) -> Result<String> {
        let (pod_config, config) = (self.pod_config(pod_name), self.container_config(ctr));
        Ok(world::create(&mut self.client, pod, &pod_config, &config).await?)
    }

    /// The world's container `ctr.name`, with `ctr`'s stdin and tty.
    fn container_config(&self, ctr: &Ctr<'_>) -> ContainerConfig {
        ContainerConfig {
            stdin: ctr.stdin,
            stdin_once: ctr.stdin_once,
            tty: ctr.tty,
            ..self.world.container(ctr.name, ctr.command)
        }
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
        // Then berth is stopped and the world sweeps whatever is left on the host.
        self.remove_pods();
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

/// `GET /` to 127.0.0.1:`port`, within [`WAIT`]; the whole answer.
pub async fn http_get(port: u16) -> Result<String> {
    world::http_get_within(&format!("127.0.0.1:{port}"), WAIT).await
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
