//! The delegate backend: pods run by another berth (`berth delegate`) that this node
//! reaches over gRPC (`proto/delegate.proto`), e.g. the berth inside a Windows node's
//! WSL2 VM running the node's Linux pods.
//!
//! The delegate keeps its own state (pods, containers, images) and recovers it like
//! `berth serve`; this side keeps nothing but the channel, so a delegate that was
//! killed and came back reports its pods again. The channel dials lazily and again
//! after every loss: while the delegate is unreachable calls answer
//! [`Error::Unavailable`] naming its address and [`Runtime::ready`] says why, and the
//! node's other backends are untouched.
//!
//! CRI log files: the node passes each container's `log_path` and the delegate's
//! backend writes there. That holds when both share the node's filesystem (a
//! delegate on the same machine, or a VM that mounts the node's log directory, as
//! WSL2 mounts the Windows drives); the protocol has no log streaming yet.
//!
//! One file per verb group: `images`, `pod`, `container`, `exec` (`ExecSync`),
//! `stream` (`Exec`, `Attach` over bidirectional streams), `port_forward`; `ready` the
//! handshake probes; `connect` the channel and the error mapping; `wire` the JSON
//! payloads.

pub mod connect;
mod container;
mod exec;
mod images;
mod pod;
mod port_forward;
mod ready;
mod stream;
pub mod wire;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use berth_proto::delegate::delegate_client::DelegateClient;
use tonic::transport::Channel;

use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::runtime::Runtime;
use crate::types::{
    AttachRequest, ContainerSpec, ContainerStats, ContainerStatus, ExecOutput, ExecRequest,
    ExecStreamRequest, Features, FsUsage, ImageInfo, PortStream, PullRequest, SandboxSpec,
    SandboxStats, SandboxStatus, StreamSession,
};

/// The backend's name in pod records and messages.
pub const NAME: &str = "delegate";

/// The protocol version this side speaks (`HandshakeRequest.protocol`).
pub const PROTOCOL: u32 = 1;

/// How the node reaches its delegate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegateConfig {
    /// `unix:///path/to/socket`, or `https://host:port` (TCP with mutual TLS).
    pub address: String,
    /// The OCI `os` values of the workloads the delegate runs (`linux`).
    pub os: Vec<String>,
    /// Client certificate, key and the CA that signed the delegate's certificate;
    /// required for `https://`.
    pub tls: Option<DelegateTls>,
    /// This node's id, sent in the handshake for the delegate's logs.
    pub node: String,
}

/// The client side of mutual TLS: PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegateTls {
    /// The CA certificate(s) the delegate's certificate must chain to.
    pub ca: PathBuf,
    /// This node's client certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The name the delegate's certificate must carry; empty: the address's host.
    pub server_name: String,
}

/// A client of the delegate: each request carries the caller's trace context, so the
/// delegate's spans join the node agent's trace.
type Client = DelegateClient<
    tonic::service::interceptor::InterceptedService<
        Channel,
        fn(tonic::Request<()>) -> std::result::Result<tonic::Request<()>, tonic::Status>,
    >,
>;

/// The delegate backend: a gRPC client of `berth delegate`.
pub struct DelegateRuntime {
    config: DelegateConfig,
    channel: Channel,
    /// The features of the last handshake (none before the first).
    features: Arc<Mutex<Features>>,
    /// The handshakes' findings (`ready`).
    readiness: ready::Readiness,
}

impl DelegateRuntime {
    /// The backend for the delegate at `config.address`; nothing is dialled yet (see
    /// the module documentation). Fails only on a config that cannot work (an address
    /// that is no URI, unreadable certificate files).
    pub fn open(config: DelegateConfig) -> Result<Self> {
        let channel = connect::channel(&config)?;
        Ok(Self {
            config,
            channel,
            features: Arc::new(Mutex::new(Features::default())),
            readiness: ready::Readiness::new(),
        })
    }

    /// A client on the shared channel (cheap: the channel is a handle), unless the
    /// delegate was found silent: then the call fails `Unavailable` at once rather
    /// than wait out the connect timeout (`ready.rs`).
    fn client(&self) -> Result<Client> {
        match self.silent() {
            Some(e) => Err(e),
            None => Ok(self.ungated_client()),
        }
    }

    /// A client on the shared channel, whatever the last probe found.
    fn ungated_client(&self) -> Client {
        DelegateClient::with_interceptor(self.channel.clone(), crate::trace_context::propagate as _)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }

    /// The delegate, as errors name it.
    fn service(&self) -> String {
        format!("delegate at {}", self.config.address)
    }

    /// A failed call as this crate's error, naming the delegate.
    fn error(&self, status: tonic::Status) -> Error {
        connect::from_status(self.service(), status)
    }
}

#[async_trait]
impl Runtime for DelegateRuntime {
    fn name(&self) -> &str {
        NAME
    }

    fn runs_os(&self, os: &str) -> bool {
        self.config.os.iter().any(|o| o == os)
    }

    /// Reachable and speaking our protocol, as the latest handshake found; a delegate
    /// that does not answer costs no caller more than a short wait (`ready.rs`).
    async fn ready(&self) -> Result<()> {
        self.probe_ready().await
    }

    async fn pull_image(&self, request: &PullRequest) -> Result<ImageInfo> {
        self.pull(request).await
    }

    async fn image_status(&self, reference: &str) -> Result<Option<ImageInfo>> {
        self.status_of_image(reference).await
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>> {
        self.images().await
    }

    async fn remove_image(&self, reference: &str) -> Result<()> {
        self.remove(reference).await
    }

    async fn image_fs_info(&self) -> Result<Vec<FsUsage>> {
        self.fs_info().await
    }

    async fn run_pod_sandbox(&self, id: &ContainerId, spec: &SandboxSpec) -> Result<SandboxStatus> {
        self.run_pod(id, spec).await
    }

    async fn pod_sandbox_status(&self, id: &ContainerId) -> Result<SandboxStatus> {
        self.pod_status(id).await
    }

    async fn pod_sandbox_stats(&self, id: &ContainerId) -> Result<SandboxStats> {
        self.pod_stats(id).await
    }

    async fn stop_pod_sandbox(&self, id: &ContainerId) -> Result<()> {
        self.stop_pod(id).await
    }

    async fn remove_pod_sandbox(&self, id: &ContainerId) -> Result<()> {
        self.remove_pod(id).await
    }

    async fn update_pod_sandbox_resources(
        &self,
        id: &ContainerId,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        self.update_pod(id, resources).await
    }

    async fn create_container(
        &self,
        sandbox: &ContainerId,
        id: &ContainerId,
        spec: &ContainerSpec,
    ) -> Result<()> {
        self.create(sandbox, id, spec).await
    }

    async fn start_container(&self, id: &ContainerId) -> Result<()> {
        self.start(id).await
    }

    async fn stop_container(&self, id: &ContainerId, timeout: Duration) -> Result<()> {
        self.stop(id, timeout).await
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<()> {
        self.remove_one(id).await
    }

    async fn container_status(&self, id: &ContainerId) -> Result<ContainerStatus> {
        self.status(id).await
    }

    async fn update_container_resources(
        &self,
        id: &ContainerId,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        self.update(id, resources).await
    }

    async fn reopen_container_log(&self, id: &ContainerId) -> Result<()> {
        self.reopen_log(id).await
    }

    async fn exec_sync(&self, id: &ContainerId, request: &ExecRequest) -> Result<ExecOutput> {
        self.exec_and_wait(id, request).await
    }

    async fn container_stats(&self, id: &ContainerId) -> Result<ContainerStats> {
        self.stats(id).await
    }

    async fn exec(&self, id: &ContainerId, request: &ExecStreamRequest) -> Result<StreamSession> {
        self.exec_session(id, request).await
    }

    async fn attach(&self, id: &ContainerId, request: &AttachRequest) -> Result<StreamSession> {
        self.attach_session(id, request).await
    }

    async fn port_forward(&self, sandbox: &ContainerId, port: u16) -> Result<PortStream> {
        self.forward(sandbox, port).await
    }

    /// What the delegate said in its last handshake (`ready`, also run at start-up);
    /// none before it ever answered, rather than promise what it may not do.
    fn features(&self) -> Features {
        *self.features.lock().unwrap_or_else(|p| p.into_inner())
    }
}
