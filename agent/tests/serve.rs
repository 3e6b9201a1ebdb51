//! Black-box tests: start the real `berth` binary on a temporary socket and state dir
//! and talk CRI to it over the unix socket with the k8s-cri client.

use std::fs::{self, File};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

const STARTUP: Duration = Duration::from_secs(20);

/// A temporary berth home: config, socket and state dir under one temp dir.
struct Home {
    dir: TempDir,
}

impl Home {
    fn new(extra_config: &str) -> Result<Self> {
        let home = Home {
            dir: tempfile::tempdir()?,
        };
        let config = format!(
            "socket: {}\nstate_dir: {}\nrun_dir: {}\nnode_id: test-node\nlog:\n  level: info,berth=debug\n{extra_config}",
            home.socket().display(),
            home.dir.path().join("state").display(),
            home.dir.path().join("run-state").display()
        );
        fs::write(home.config(), config)?;
        Ok(home)
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("run/berth.sock")
    }

    /// Starts `berth serve` with stderr in a file of its own.
    fn spawn(&self, name: &str) -> Result<Berth> {
        let stderr_path = self.dir.path().join(format!("{name}.stderr"));
        let child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .args(["serve", "--config"])
            .arg(self.config())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr_path)?)
            .spawn()?;
        Ok(Berth {
            child,
            stderr_path,
            socket: self.socket(),
        })
    }

    /// Starts berth and waits until it answers on its socket.
    async fn start(&self) -> Result<Berth> {
        let mut berth = self.spawn("berth")?;
        berth.wait_until_serving().await?;
        Ok(berth)
    }
}

/// A running `berth serve`; killed if the test ends without stopping it.
struct Berth {
    child: Child,
    stderr_path: PathBuf,
    socket: PathBuf,
}

impl Berth {
    async fn wait_until_serving(&mut self) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "berth exited with {status} before serving: {}",
                    self.stderr()
                );
            }
            if let Ok(channel) = connect(&self.socket).await {
                let mut client = RuntimeServiceClient::new(channel);
                if client.version(VersionRequest::default()).await.is_ok() {
                    return Ok(());
                }
            }
            if start.elapsed() > STARTUP {
                bail!("berth did not serve within {STARTUP:?}: {}", self.stderr());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn signal(&self, signal: Signal) -> Result<()> {
        kill(Pid::from_raw(i32::try_from(self.child.id())?), signal)?;
        Ok(())
    }

    /// Waits for the process to exit, for at most `limit`. Async, so the test's own
    /// client connections keep answering the server's shutdown handshake meanwhile.
    async fn wait(&mut self, limit: Duration) -> Result<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if start.elapsed() > limit {
                bail!("berth still running after {limit:?}: {}", self.stderr());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn runtime(&self) -> Result<RuntimeServiceClient<Channel>> {
        Ok(RuntimeServiceClient::new(connect(&self.socket).await?))
    }

    async fn images(&self) -> Result<ImageServiceClient<Channel>> {
        Ok(ImageServiceClient::new(connect(&self.socket).await?))
    }
}

impl Drop for Berth {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connect(socket: &Path) -> Result<Channel> {
    let endpoint = Endpoint::from_shared(format!("unix://{}", socket.display()))?;
    endpoint.connect().await.context("connecting")
}

/// Runs a second `berth serve` to completion (it must exit on its own).
async fn run_to_exit(home: &Home, name: &str) -> Result<(ExitStatus, String)> {
    let mut berth = home.spawn(name)?;
    let status = berth.wait(STARTUP).await?;
    Ok((status, berth.stderr()))
}

#[tokio::test]
async fn answers_version_status_and_runtime_config() -> Result<()> {
    let home = Home::new("")?;
    let berth = home.start().await?;
    let mut client = berth.runtime().await?;

    let version = client
        .version(VersionRequest::default())
        .await?
        .into_inner();
    assert_eq!(version.version, "0.1.0");
    assert_eq!(version.runtime_name, "berth");
    assert_eq!(version.runtime_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(version.runtime_api_version, "v1");

    let status = client
        .status(StatusRequest { verbose: true })
        .await?
        .into_inner();
    let conditions = status.status.context("no status")?.conditions;
    let condition = |kind: &str| conditions.iter().find(|c| c.r#type == kind).cloned();
    let network = condition("NetworkReady").context("no NetworkReady")?;
    assert!(!network.status);
    assert_eq!(network.reason, "NetworkPluginNotReady");
    // RuntimeReady must tell the truth: it is true exactly when the runtime answers.
    let runtime_ready = condition("RuntimeReady").context("no RuntimeReady")?;
    let fs_info = berth
        .images()
        .await?
        .image_fs_info(ImageFsInfoRequest {})
        .await;
    assert_eq!(runtime_ready.status, fs_info.is_ok(), "{runtime_ready:?}");
    if !runtime_ready.status {
        assert!(!runtime_ready.reason.is_empty() && !runtime_ready.message.is_empty());
    }
    let handlers: Vec<_> = status
        .runtime_handlers
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(handlers, [""]);
    let config: serde_json::Value = serde_json::from_str(&status.info["config"])?;
    assert_eq!(config["socket"], home.socket().display().to_string());
    assert_eq!(config["node_id"], "test-node");

    let runtime_config = client
        .runtime_config(RuntimeConfigRequest::default())
        .await?
        .into_inner();
    assert_eq!(
        runtime_config.linux.context("no linux")?.cgroup_driver(),
        CgroupDriver::Cgroupfs
    );
    Ok(())
}

#[tokio::test]
async fn the_socket_is_private_and_its_directory_created() -> Result<()> {
    let home = Home::new("")?;
    let _berth = home.start().await?;
    let meta = fs::metadata(home.socket())?;
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let dir = fs::metadata(home.socket().parent().context("no parent")?)?;
    assert_eq!(dir.permissions().mode() & 0o777, 0o755);
    let state = fs::metadata(home.dir.path().join("state"))?;
    assert_eq!(state.permissions().mode() & 0o777, 0o700);
    assert!(home.dir.path().join("state/state.redb").is_file());
    Ok(())
}

#[tokio::test]
async fn a_second_berth_on_the_same_socket_is_refused() -> Result<()> {
    let home = Home::new("")?;
    let berth = home.start().await?;
    let (status, stderr) = run_to_exit(&home, "second").await?;
    assert!(!status.success());
    let lock = format!("{}.lock", home.socket().display());
    assert!(
        stderr.contains("another berth is already running"),
        "{stderr}"
    );
    assert!(stderr.contains(&lock), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    // The first one is unharmed.
    berth
        .runtime()
        .await?
        .version(VersionRequest::default())
        .await?;
    assert!(home.socket().exists());
    Ok(())
}

#[tokio::test]
async fn sigterm_stops_cleanly_and_removes_the_socket() -> Result<()> {
    let home = Home::new("")?;
    let mut berth = home.start().await?;
    // An open, idle client connection must not hold the shutdown up.
    let mut client = berth.runtime().await?;
    client.version(VersionRequest::default()).await?;
    berth.signal(Signal::SIGTERM)?;
    let status = berth.wait(Duration::from_secs(8)).await?;
    assert!(status.success(), "{status}: {}", berth.stderr());
    assert!(!home.socket().exists());
    assert!(berth.stderr().contains("SIGTERM"), "{}", berth.stderr());
    // And it starts again on the same socket and state.
    let mut again = home.start().await?;
    again.signal(Signal::SIGINT)?;
    assert!(again.wait(Duration::from_secs(8)).await?.success());
    assert!(!home.socket().exists());
    Ok(())
}

/// A client that connects and then never speaks holds the shutdown up for at most the
/// grace period (10 s).
#[tokio::test]
async fn a_silent_client_does_not_hold_shutdown_beyond_the_grace_period() -> Result<()> {
    let home = Home::new("")?;
    let mut berth = home.start().await?;
    let _silent = std::os::unix::net::UnixStream::connect(home.socket())?;
    let start = Instant::now();
    berth.signal(Signal::SIGTERM)?;
    let status = berth.wait(Duration::from_secs(15)).await?;
    assert!(status.success(), "{status}: {}", berth.stderr());
    assert!(start.elapsed() < Duration::from_secs(14));
    assert!(!home.socket().exists());
    Ok(())
}

#[tokio::test]
async fn a_stale_socket_is_replaced() -> Result<()> {
    let home = Home::new("")?;
    fs::create_dir_all(home.socket().parent().context("no parent")?)?;
    drop(std::os::unix::net::UnixListener::bind(home.socket())?);
    assert!(home.socket().exists());
    let berth = home.start().await?;
    berth
        .runtime()
        .await?
        .version(VersionRequest::default())
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_socket_served_by_someone_else_is_refused() -> Result<()> {
    let home = Home::new("")?;
    fs::create_dir_all(home.socket().parent().context("no parent")?)?;
    let _other = std::os::unix::net::UnixListener::bind(home.socket())?;
    let (status, stderr) = run_to_exit(&home, "berth").await?;
    assert!(!status.success());
    assert!(
        stderr.contains("already served by another process"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&home.socket().display().to_string()),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn an_unknown_config_field_is_named() -> Result<()> {
    let home = Home::new("registries:\n  mirrorz: {}\n")?;
    let (status, stderr) = run_to_exit(&home, "berth").await?;
    assert!(!status.success());
    assert!(stderr.contains("unknown field `mirrorz`"), "{stderr}");
    assert!(stderr.contains("registries"), "{stderr}");
    assert!(
        stderr.contains(&home.config().display().to_string()),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(!home.socket().exists());
    Ok(())
}

/// A pod config valid in every field kubelet must fill in.
fn pod_config(name: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("{name}-uid"),
            namespace: "default".into(),
            attempt: 0,
        }),
        linux: Some(LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

/// A random-looking id nothing on a fresh node has.
const UNKNOWN_ID: &str = "4c1e2f3a-9b8d-4e7f-a6c5-0d1e2f3a4b5c";

#[tokio::test]
async fn bad_pod_requests_are_refused_and_leave_nothing() -> Result<()> {
    let home = Home::new("")?;
    let berth = home.start().await?;
    let mut client = berth.runtime().await?;

    let missing = client
        .run_pod_sandbox(RunPodSandboxRequest::default())
        .await
        .expect_err("a pod without a config ran");
    assert_eq!(missing.code(), Code::InvalidArgument, "{missing:?}");
    assert!(
        missing.message().starts_with("RunPodSandbox: "),
        "{missing:?}"
    );

    let mut unnamed = pod_config("web");
    unnamed.metadata.as_mut().context("metadata")?.uid.clear();
    let status = client
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(unnamed),
            runtime_handler: String::new(),
        })
        .await
        .expect_err("a pod without a uid ran");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("metadata.uid"), "{status:?}");

    // A runtime handler this node does not serve is refused before any backend runs.
    let status = client
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_config("web")),
            runtime_handler: "no-such-handler".into(),
        })
        .await
        .expect_err("an unknown handler ran");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("no-such-handler"), "{status:?}");

    let pods = client
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await?
        .into_inner();
    assert!(pods.items.is_empty(), "{pods:?}");
    let containers = client
        .list_containers(ListContainersRequest::default())
        .await?
        .into_inner();
    assert!(containers.containers.is_empty(), "{containers:?}");
    let stats = client
        .list_container_stats(ListContainerStatsRequest::default())
        .await?
        .into_inner();
    assert!(stats.stats.is_empty());
    let pod_stats = client
        .list_pod_sandbox_stats(ListPodSandboxStatsRequest::default())
        .await?
        .into_inner();
    assert!(pod_stats.stats.is_empty());

    let create = client
        .create_container(CreateContainerRequest {
            pod_sandbox_id: UNKNOWN_ID.into(),
            ..Default::default()
        })
        .await
        .expect_err("a container in no pod was created");
    assert_eq!(create.code(), Code::NotFound, "{create:?}");
    assert!(create.message().contains(UNKNOWN_ID), "{create:?}");
    Ok(())
}

/// critest's Idempotence specs: stopping and removing what does not exist succeeds;
/// asking about it is NotFound.
#[tokio::test]
async fn teardown_of_unknown_ids_succeeds_and_status_is_not_found() -> Result<()> {
    let home = Home::new("")?;
    let berth = home.start().await?;
    let mut client = berth.runtime().await?;
    let id = UNKNOWN_ID.to_string();
    client
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await?;
    client
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await?;
    client
        .stop_container(StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await?;
    client
        .remove_container(RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await?;
    let answers = [
        client
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: true,
            })
            .await
            .map(drop),
        client
            .container_status(ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false,
            })
            .await
            .map(drop),
        client
            .exec_sync(ExecSyncRequest {
                container_id: id.clone(),
                cmd: vec!["true".into()],
                timeout: 1,
            })
            .await
            .map(drop),
        client
            .container_stats(ContainerStatsRequest {
                container_id: id.clone(),
            })
            .await
            .map(drop),
    ];
    for answer in answers {
        let status = answer.expect_err("an unknown object answered");
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert!(status.message().contains(&id), "{status:?}");
    }
    Ok(())
}

#[tokio::test]
async fn streaming_verbs_are_unimplemented_and_say_why() -> Result<()> {
    let home = Home::new("")?;
    let berth = home.start().await?;
    let mut client = berth.runtime().await?;
    let answers = [
        client.exec(ExecRequest::default()).await.map(drop),
        client.attach(AttachRequest::default()).await.map(drop),
        client
            .port_forward(PortForwardRequest::default())
            .await
            .map(drop),
    ];
    for answer in answers {
        let status = answer.expect_err("a streaming verb answered");
        assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
        assert!(status.message().contains("streaming server"), "{status:?}");
    }
    let events = client
        .get_container_events(GetEventsRequest::default())
        .await
        .map(drop)
        .expect_err("events answered");
    assert_eq!(events.code(), Code::Unimplemented);
    Ok(())
}

#[tokio::test]
async fn an_empty_image_is_an_invalid_argument() -> Result<()> {
    let home = Home::new("")?;
    let berth = home.start().await?;
    let mut images = berth.images().await?;
    let status = images
        .pull_image(PullImageRequest::default())
        .await
        .expect_err("pulled nothing");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("PullImage:"), "{status:?}");
    Ok(())
}

/// Makes one call that fails whatever the backend (RunPodSandbox without a config)
/// and one ImageStatus, stops berth, and returns its stderr and the ImageStatus result.
async fn failing_calls_then_stop(home: &Home) -> Result<(String, bool)> {
    let mut berth = home.start().await?;
    let pod = berth
        .runtime()
        .await?
        .run_pod_sandbox(RunPodSandboxRequest::default())
        .await;
    assert!(pod.is_err());
    let image = berth
        .images()
        .await?
        .image_status(ImageStatusRequest {
            image: Some(ImageSpec {
                image: "docker.io/library/busybox:1.36".into(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await;
    berth.signal(Signal::SIGTERM)?;
    berth.wait(Duration::from_secs(8)).await?;
    Ok((berth.stderr(), image.is_ok()))
}

/// With `log.format: json` every line is JSON, and a failed call is logged once, in
/// the call's span with the method and the image it named.
#[tokio::test]
async fn json_logs_carry_the_call_span_and_log_a_failure_once() -> Result<()> {
    let home = Home::new("  format: json\n")?;
    let (stderr, image_ok) = failing_calls_then_stop(&home).await?;
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .with_context(|| format!("not JSON lines: {stderr}"))?;
    let failures = |method: &str| -> Vec<&serde_json::Value> {
        lines
            .iter()
            .filter(|l| l["span"]["rpc.method"] == method && l["fields"].get("grpc.code").is_some())
            .collect()
    };
    let pod = failures("RunPodSandbox");
    assert_eq!(pod.len(), 1, "{stderr}");
    assert_eq!(pod[0]["span"]["rpc.service"], "runtime.v1.RuntimeService");
    assert_eq!(pod[0]["span"]["otel.status_code"], "ERROR");
    assert!(pod[0]["fields"]["grpc.message"]
        .as_str()
        .is_some_and(|m| m.contains("RunPodSandbox")));
    let image = failures("ImageStatus");
    if image_ok {
        assert!(image.is_empty(), "{image:?}");
    } else {
        assert_eq!(image.len(), 1, "{stderr}");
        assert_eq!(image[0]["span"]["image"], "docker.io/library/busybox:1.36");
        assert_eq!(image[0]["span"]["rpc.service"], "runtime.v1.ImageService");
    }
    Ok(())
}

/// Text logs show the same span fields, and the failure once.
#[tokio::test]
async fn text_logs_name_the_method_of_a_failed_call() -> Result<()> {
    let home = Home::new("")?;
    let (stderr, _) = failing_calls_then_stop(&home).await?;
    let failures: Vec<_> = stderr
        .lines()
        .filter(|l| l.contains("rpc.method=\"RunPodSandbox\"") && l.contains("grpc.code"))
        .collect();
    assert_eq!(failures.len(), 1, "{stderr}");
    Ok(())
}
