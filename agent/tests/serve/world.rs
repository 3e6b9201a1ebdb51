//! A world for the tests that run pods through berth: a registry holding a busybox
//! image, and a berth home whose pods get a network of their own (bridge `be<tag>`,
//! a free `10.X.0.0/16` with X in 100-149, away from the network tests' 200-254 and the
//! youki tests' 150-199), a cgroup parent of their own and a node id carrying the tag,
//! so every CNI container id (and so every portmap rule) names this test. Dropping the
//! world sweeps up whatever a failed test left on the host.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_proto::cri::v1::runtime_service_client::RuntimeServiceClient;
use berth_proto::cri::v1::*;
use berth_testkit::host::{self, Leftovers};
use berth_testkit::images::busybox_registry;
use berth_testkit::require;
use berth_testkit::servers::Registry;
use tonic::transport::Channel;

use crate::{pull, Berth, Home};

/// The runtime service client of the tests.
pub type Client = RuntimeServiceClient<Channel>;

/// One test's registry, berth home, network and cgroup parent.
pub struct World {
    pub home: Home,
    registry: Registry,
    /// The busybox image's reference.
    pub image: String,
    /// Unique to the test: in its node id (hence in every CNI container id), bridge and
    /// cgroup parent.
    pub tag: String,
    /// `10.X.`: every pod address starts with it.
    pub prefix: String,
    pub bridge: String,
    pub cgroup_parent: String,
}

impl World {
    pub async fn new() -> Result<World> {
        World::with_config("").await
    }

    /// [`World::new`] with `extra` (YAML lines) at the top level of berth's config.
    pub async fn with_config(extra: &str) -> Result<World> {
        World::with_network_config("", extra).await
    }

    /// [`World::with_config`] with `network` (YAML lines, two spaces in) added to the
    /// `network` section.
    pub async fn with_network_config(network: &str, extra: &str) -> Result<World> {
        require::root("these tests run pods");
        let (registry, image) = busybox_registry().await;
        let tag = format!("{:08x}", host::random());
        let x = host::free_subnet_octet(100..150);
        let bridge = format!("be{tag}");
        let cgroup_parent = format!("/berth-e2e/{tag}");
        let network =
            format!("  default_bridge: {bridge}\n  default_subnet: 10.{x}.0.0/16\n{network}");
        let extra = format!(
            "cgroup_parent: {cgroup_parent}\nregistries:\n  insecure: [\"{}\"]\n{extra}",
            registry.addr
        );
        let home = Home::with_node(&format!("e2e-{tag}"), &network, &extra)?;
        Ok(World {
            home,
            image,
            registry,
            tag,
            prefix: format!("10.{x}."),
            bridge,
            cgroup_parent,
        })
    }

    /// The test registry's address (`127.0.0.1:<port>`), to push more images to.
    pub fn registry(&self) -> &str {
        &self.registry.addr
    }

    /// Starts berth and pulls the busybox image through it.
    pub async fn start(&self) -> Result<Berth> {
        self.start_as("berth").await
    }

    /// `start`, with stderr in `<name>.stderr`.
    pub async fn start_as(&self, name: &str) -> Result<Berth> {
        let berth = self.home.start_as(name).await?;
        pull(&mut berth.images().await?, &self.image).await?;
        Ok(berth)
    }

    /// The test's directory, symlinks resolved (as mountinfo shows it).
    pub fn dir(&self) -> PathBuf {
        let dir = self.home.dir.path();
        dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
    }

    /// berth's run dir.
    pub fn run_dir(&self) -> PathBuf {
        self.dir().join("run-state")
    }

    /// The pod log directory kubelet would give the pod `name`.
    pub fn log_dir(&self, name: &str) -> PathBuf {
        self.dir().join("logs").join(name)
    }

    /// The host's address on the test's bridge (the pods' gateway).
    pub fn gateway(&self) -> String {
        format!("{}0.1", self.prefix)
    }

    /// A pod named `name` (with the tag in its uid), its own network, a PID namespace
    /// per container as kubelet asks by default, and `ports` as (container, host) TCP
    /// hostPort mappings.
    pub fn pod(&self, name: &str, ports: &[(u16, u16)]) -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: format!("{name}-{}", self.tag),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: self.log_dir(name).display().to_string(),
            port_mappings: ports
                .iter()
                .map(|&(container, host)| PortMapping {
                    protocol: Protocol::Tcp as i32,
                    container_port: container.into(),
                    host_port: host.into(),
                    host_ip: String::new(),
                })
                .collect(),
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
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

    /// A container named `name` running `command` from the busybox image, logging to
    /// `<name>.log` in its pod's log directory.
    pub fn container(&self, name: &str, command: &[&str]) -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: self.image.clone(),
                ..Default::default()
            }),
            command: command.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}.log"),
            linux: Some(LinuxContainerConfig::default()),
            ..Default::default()
        }
    }

    /// What pods could leave on the host, as far as this test's things go.
    pub fn host(&self) -> HostState {
        let run = self.run_dir();
        let pin_dirs: Vec<PathBuf> = ["netns", "ipcns", "utsns"]
            .iter()
            .map(|d| run.join(d))
            .collect();
        HostState {
            // The pin directories themselves stay mounted (shared, onto themselves, so
            // that unpins propagate) once the first pod is made: not a pod's leftover.
            mounts: host::mounts_under(&self.dir())
                .into_iter()
                .filter(|m| !pin_dirs.iter().any(|d| Path::new(m) == d))
                .collect(),
            pins: pin_dirs
                .iter()
                .flat_map(|d| berth_testkit::names(d))
                .collect(),
            cgroups: host::cgroups_below(&self.cgroup_parent),
            veths: host::bridge_ports(&self.bridge),
            addresses: host::ipam_allocations(&run.join("cni/ipam/berth")),
            nat_rules: host::nat_rules(&[&self.tag, &self.prefix]),
            supervisors: host::processes_mentioning(&run.join("youki").to_string_lossy()),
            records: ["state/youki/pods", "state/youki/containers"]
                .iter()
                .flat_map(|d| berth_testkit::names(&self.dir().join(d)))
                .collect(),
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        host::sweep(&Leftovers {
            dir: &self.dir(),
            cgroup_parent: &self.cgroup_parent,
            bridge: &self.bridge,
            tag: &self.tag,
        });
    }
}

/// What pods leave on the host, for before/after comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostState {
    /// Mount points below the test's directory (rootfs overlays, pins, `/dev/shm`s).
    pub mounts: Vec<String>,
    /// Namespace pin files.
    pub pins: Vec<String>,
    /// cgroups below the test's cgroup parent, in every v1 hierarchy and the v2 tree.
    pub cgroups: Vec<PathBuf>,
    /// veths on the test's bridge.
    pub veths: Vec<String>,
    /// host-local address allocations.
    pub addresses: Vec<String>,
    /// nat rules naming the test's tag or subnet.
    pub nat_rules: Vec<String>,
    /// Supervisor processes (`berth shim <run_dir>/youki/pods/…`).
    pub supervisors: Vec<String>,
    /// The youki backend's pod and container records.
    pub records: Vec<String>,
}

/// `RunPodSandbox` on the runtime handler `handler`; the pod id, or the refusal as is.
pub async fn run_on(
    client: &mut Client,
    config: &PodSandboxConfig,
    handler: &str,
) -> Result<String, tonic::Status> {
    let request = RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: handler.into(),
    };
    Ok(client
        .run_pod_sandbox(request)
        .await?
        .into_inner()
        .pod_sandbox_id)
}

/// `ExecSync` of `cmd` in container `id` (10 s timeout); its output, or the refusal.
pub async fn exec(
    client: &mut Client,
    id: &str,
    cmd: &[&str],
) -> Result<ExecSyncResponse, tonic::Status> {
    Ok(client
        .exec_sync(ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 10,
        })
        .await?
        .into_inner())
}

/// `RunPodSandbox`; the pod id.
pub async fn run_pod(client: &mut Client, config: &PodSandboxConfig) -> Result<String> {
    let request = RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: String::new(),
    };
    Ok(client
        .run_pod_sandbox(request)
        .await?
        .into_inner()
        .pod_sandbox_id)
}

/// `CreateContainer` of `config` in `pod` (made from `pod_config`); the container id.
pub async fn create(
    client: &mut Client,
    pod: &str,
    pod_config: &PodSandboxConfig,
    config: &ContainerConfig,
) -> Result<String, tonic::Status> {
    let request = CreateContainerRequest {
        pod_sandbox_id: pod.into(),
        config: Some(config.clone()),
        sandbox_config: Some(pod_config.clone()),
    };
    Ok(client
        .create_container(request)
        .await?
        .into_inner()
        .container_id)
}

/// `CreateContainer` then `StartContainer`; the container id.
pub async fn create_and_start(
    client: &mut Client,
    pod: &str,
    pod_config: &PodSandboxConfig,
    config: &ContainerConfig,
) -> Result<String> {
    let id = create(client, pod, pod_config, config).await?;
    client
        .start_container(StartContainerRequest {
            container_id: id.clone(),
        })
        .await?;
    Ok(id)
}

/// `PodSandboxStatus` (verbose).
pub async fn pod_status(client: &mut Client, pod: &str) -> Result<PodSandboxStatusResponse> {
    let request = PodSandboxStatusRequest {
        pod_sandbox_id: pod.into(),
        verbose: true,
    };
    Ok(client.pod_sandbox_status(request).await?.into_inner())
}

/// The pod's IP as `PodSandboxStatus` reports it.
pub async fn pod_ip(client: &mut Client, pod: &str) -> Result<String> {
    let status = pod_status(client, pod).await?.status.context("no status")?;
    let ip = status
        .network
        .as_ref()
        .map(|n| n.ip.clone())
        .unwrap_or_default();
    anyhow::ensure!(!ip.is_empty(), "pod {pod} has no IP: {status:?}");
    Ok(ip)
}

/// `ContainerStatus` (verbose): the status and the pid its verbose info names.
pub async fn container_status(
    client: &mut Client,
    id: &str,
) -> Result<(ContainerStatus, Option<i64>)> {
    let answer = client
        .container_status(ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        })
        .await?
        .into_inner();
    let info: serde_json::Value =
        serde_json::from_str(answer.info.get("info").context("no verbose info")?)?;
    Ok((answer.status.context("no status")?, info["pid"].as_i64()))
}

/// Polls `ContainerStatus` of `id` until it has exited (at most `within`).
pub async fn wait_exited(
    client: &mut Client,
    id: &str,
    within: Duration,
) -> Result<ContainerStatus> {
    let deadline = Instant::now() + within;
    loop {
        let (status, _) = container_status(client, id).await?;
        if status.state == ContainerState::ContainerExited as i32 {
            return Ok(status);
        }
        if Instant::now() > deadline {
            bail!("container {id} did not exit within {within:?}: {status:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every pod berth lists.
pub async fn list_pods(client: &mut Client) -> Result<Vec<PodSandbox>> {
    let answer = client
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await?;
    Ok(answer.into_inner().items)
}

/// Every container berth lists.
pub async fn list_containers(client: &mut Client) -> Result<Vec<Container>> {
    let answer = client
        .list_containers(ListContainersRequest::default())
        .await?;
    Ok(answer.into_inner().containers)
}

/// Stops and removes every pod berth lists (and so their containers).
pub async fn remove_all_pods(client: &mut Client) -> Result<()> {
    for pod in list_pods(client).await? {
        stop_and_remove_pod(client, &pod.id).await?;
    }
    Ok(())
}

/// Stops (at once) and removes the container `id`.
pub async fn stop_and_remove_container(client: &mut Client, id: &str) -> Result<()> {
    client
        .stop_container(StopContainerRequest {
            container_id: id.to_string(),
            timeout: 0,
        })
        .await?;
    client
        .remove_container(RemoveContainerRequest {
            container_id: id.to_string(),
        })
        .await?;
    Ok(())
}

/// Stops and removes the pod `id` (and so its containers), as kubelet does.
pub async fn stop_and_remove_pod(client: &mut Client, id: &str) -> Result<()> {
    client
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        })
        .await?;
    client
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        })
        .await?;
    Ok(())
}

/// `GET /` over plain TCP to `addr`, within 3 s; the whole answer.
pub async fn http_get(addr: &str) -> Result<String> {
    http_get_within(addr, Duration::from_secs(3)).await
}

/// `GET /` over plain TCP to `addr`, connect to last byte within `limit`; the whole
/// answer.
pub async fn http_get_within(addr: &str, limit: Duration) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n").await?;
        let mut out = String::new();
        s.read_to_string(&mut out).await?;
        anyhow::Ok(out)
    };
    tokio::time::timeout(limit, exchange)
        .await
        .with_context(|| format!("GET http://{addr}/ timed out"))?
}
