//! Black-box tests: start the real `berth` binary on a temporary socket and state dir
//! and talk CRI to it over the unix socket with the CRI client berth-proto generates. The image tests
//! pull from Debian's real `docker-registry` (through `berth-testkit`'s proxies) and
//! run as root, as CI does.

mod campaign;
mod container_errors;
mod containerd;
mod crash;
mod cri_metrics;
mod delegate;
mod doctor;
mod events;
mod health;
mod image_crash;
mod image_errors;
mod image_in_use;
mod image_pull;
mod image_verbs;
mod image_volumes;
mod inspect;
mod lifecycle;
mod listing;
mod logs;
mod many_containers;
mod many_pods;
mod metrics;
mod missing_command;
mod non_go_clients;
mod nri;
mod pod_cidr;
mod pod_http;
mod pods;
mod resize;
mod shared_pid;
mod streams;
mod supervisor_death;
mod traces;
mod world;

use std::fs::{self, File};
use std::future::Future;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_proto::cri::v1::image_service_client::ImageServiceClient;
use berth_proto::cri::v1::runtime_service_client::RuntimeServiceClient;
use berth_proto::cri::v1::*;
use hyper_util::rt::{TokioExecutor, TokioIo};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tempfile::TempDir;
use tonic::codegen::http;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

const STARTUP: Duration = Duration::from_secs(20);

/// A temporary berth home: config, socket and state dir under one temp dir.
struct Home {
    dir: TempDir,
}

impl Home {
    fn new(extra_config: &str) -> Result<Self> {
        Home::with_node("test-node", "", extra_config)
    }

    /// A home for node `node_id`, with `network` added to the `network` section (lines
    /// indented by two spaces) and `extra_config` at the top level.
    fn with_node(node_id: &str, network: &str, extra_config: &str) -> Result<Self> {
        let home = Home {
            dir: tempfile::tempdir()?,
        };
        let config = format!(
            "socket: {}\nstate_dir: {}\nrun_dir: {}\nnode_id: {node_id}\nnetwork:\n  conf_dir: {}\n{network}log:\n  level: info,berth=debug\n{extra_config}",
            home.socket().display(),
            home.dir.path().join("state").display(),
            home.dir.path().join("run-state").display(),
            home.dir.path().join("cni").display()
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

    /// A home whose berth talks plain http to the registries at `hosts`.
    fn insecure(hosts: &[&str]) -> Result<Self> {
        let hosts: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
        Home::new(&format!(
            "registries:\n  insecure: [{}]\n",
            hosts.join(", ")
        ))
    }

    /// The image store's root under the state dir.
    fn images_root(&self) -> PathBuf {
        self.dir.path().join("state/images")
    }

    /// Starts `berth serve` with stderr in a file of its own.
    fn spawn(&self, name: &str) -> Result<Berth> {
        let stderr_path = self.dir.path().join(format!("{name}.stderr"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
        command
            .args(["serve", "--config"])
            .arg(self.config())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr_path)?);
        // A test process killed outright (a timeout) runs no Drop: berth must not
        // outlive it, holding whatever the test held (its socket, a machine-wide lock).
        // SAFETY: prctl is async-signal-safe and touches only the child.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn()?;
        Ok(Berth {
            child,
            stderr_path,
            socket: self.socket(),
        })
    }

    /// Starts berth and waits until it answers on its socket.
    async fn start(&self) -> Result<Berth> {
        self.start_as("berth").await
    }

    /// `start`, with stderr in `<name>.stderr` (a restart keeps the first one's log).
    async fn start_as(&self, name: &str) -> Result<Berth> {
        let mut berth = self.spawn(name)?;
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

    /// SIGKILL, as a crash: no handler runs, nothing is cleaned up.
    async fn kill9(&mut self) -> Result<()> {
        self.signal(Signal::SIGKILL)?;
        let status = self.wait(STARTUP).await?;
        anyhow::ensure!(
            status.code().is_none(),
            "berth exited with {status} instead of being killed"
        );
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

/// An HTTP/2 connection used as a tonic transport without tonic's `Channel`, which
/// enforces each request's `grpc-timeout` itself (answering `Cancelled` before the
/// server can): over this one, what comes back for an expired deadline is berth's own
/// answer.
#[derive(Clone)]
struct BareHttp2(hyper::client::conn::http2::SendRequest<tonic::body::Body>);

impl tower::Service<http::Request<tonic::body::Body>> for BareHttp2 {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, hyper::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.0.send_request(request))
    }
}

impl Berth {
    /// An ImageService client that leaves deadlines to berth (see [`BareHttp2`]).
    async fn images_without_client_deadlines(&self) -> Result<ImageServiceClient<BareHttp2>> {
        let stream = tokio::net::UnixStream::connect(&self.socket).await?;
        let (sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await?;
        tokio::spawn(connection);
        let origin = http::Uri::from_static("http://berth");
        Ok(ImageServiceClient::with_origin(BareHttp2(sender), origin))
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

/// A CRI `ImageSpec` naming `image`.
fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.to_string(),
        ..ImageSpec::default()
    })
}

/// Pulls `image` without credentials; the image id or the call's status.
async fn pull(images: &mut ImageServiceClient<Channel>, image: &str) -> Result<String, Status> {
    let request = PullImageRequest {
        image: spec(image),
        ..PullImageRequest::default()
    };
    Ok(images.pull_image(request).await?.into_inner().image_ref)
}

/// `ImageStatus` of `image` (not verbose): `None` when berth does not have it.
async fn status(images: &mut ImageServiceClient<Channel>, image: &str) -> Result<Option<Image>> {
    let request = ImageStatusRequest {
        image: spec(image),
        verbose: false,
    };
    Ok(images.image_status(request).await?.into_inner().image)
}

/// The ids `ListImages` answers, with `filter` when given.
async fn list(
    images: &mut ImageServiceClient<Channel>,
    filter: Option<&str>,
) -> Result<Vec<String>> {
    let request = ListImagesRequest {
        filter: filter.map(|f| ImageFilter { image: spec(f) }),
    };
    let answer = images.list_images(request).await?.into_inner();
    Ok(answer.images.into_iter().map(|i| i.id).collect())
}
