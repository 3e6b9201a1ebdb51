//! The delegate protocol's server side: each RPC decoded, run on the delegate's own
//! backend, and answered; errors become statuses in `crate::status`, as for CRI.

use std::sync::Arc;
use std::time::Duration;

use berth_proto::delegate::delegate_server::Delegate;
use berth_proto::delegate::{
    CreateContainerRequest, Empty, ExecSyncRequest, ExecSyncResponse, Features, HandshakeRequest,
    HandshakeResponse, Id, ImageRef, ImageStatusResponse, Json, JsonList, PortInput, PortOutput,
    PullImageRequest, RunPodSandboxRequest, StopContainerRequest, StreamInput,
    UpdateResourcesRequest,
};
use runtimes::delegate::wire::{from_json, json, parse_id};
use runtimes::delegate::PROTOCOL;
use runtimes::types::{AttachRequest, ExecRequest, ExecStreamRequest, PullRequest, RegistryAuth};
use runtimes::{Error, Runtime};
use serde::Serialize;
use tonic::{Request, Response, Status, Streaming};

use super::{port_forward, stream};

use crate::status::from_runtime;

type Answer<T> = Result<Response<T>, Status>;

/// Serves the delegate protocol for `runtime` (the delegate's own youki backend).
pub struct DelegateService {
    runtime: Arc<dyn Runtime>,
}

impl DelegateService {
    /// The service over `runtime`.
    pub fn new(runtime: Arc<dyn Runtime>) -> Self {
        Self { runtime }
    }
}

/// A runtime result as a gRPC answer.
fn answer<T>(result: Result<T, Error>) -> Answer<T> {
    result.map(Response::new).map_err(to_status)
}

/// The status CRI would answer, plus what the node's composite needs to tell a
/// platform refusal from a failure (it pulls into every backend and expects the ones
/// that do not run an image to refuse it): a `WrongPlatform` carries its fields.
fn to_status(err: Error) -> Status {
    let fields = match &err {
        Error::WrongPlatform {
            image,
            platform,
            backend,
            supported,
        } => Some(serde_json::json!([image, platform, backend, supported]).to_string()),
        _ => None,
    };
    let mut status = from_runtime(err);
    if let Some(value) = fields.and_then(|f| f.parse().ok()) {
        status
            .metadata_mut()
            .insert(runtimes::delegate::connect::WRONG_PLATFORM, value);
    }
    status
}

fn empty(result: Result<(), Error>) -> Answer<Empty> {
    answer(result.map(|()| Empty {}))
}

fn json_of<T: Serialize>(result: Result<T, Error>) -> Answer<Json> {
    answer(result.and_then(|value| json(&value)))
}

fn json_list<T: Serialize>(result: Result<Vec<T>, Error>) -> Answer<JsonList> {
    answer(result.and_then(|values| {
        let items = values
            .iter()
            .map(|v| json(v).map(|j| j.json))
            .collect::<Result<_, _>>()?;
        Ok(JsonList { items })
    }))
}

fn id(id: Id) -> Result<runtimes::ContainerId, Status> {
    parse_id(Some(id)).map_err(from_runtime)
}

fn some_id(id: Option<Id>) -> Result<runtimes::ContainerId, Status> {
    parse_id(id).map_err(from_runtime)
}

fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

#[tonic::async_trait]
impl Delegate for DelegateService {
    type ExecStream = stream::Outbound;
    type AttachStream = stream::Outbound;
    type PortForwardStream = stream::BoxStream<PortOutput>;

    async fn port_forward(
        &self,
        request: Request<Streaming<PortInput>>,
    ) -> Answer<Self::PortForwardStream> {
        let mut inbound = request.into_inner();
        let start = port_forward::start(&mut inbound).await?;
        let sandbox = some_id(start.sandbox)?;
        let port = u16::try_from(start.port).map_err(|_| {
            Status::invalid_argument(format!("port {} is not a TCP port", start.port))
        })?;
        let connection = self
            .runtime
            .port_forward(&sandbox, port)
            .await
            .map_err(to_status)?;
        Ok(Response::new(port_forward::pump(connection, inbound)))
    }

    async fn exec(&self, request: Request<Streaming<StreamInput>>) -> Answer<Self::ExecStream> {
        let mut inbound = request.into_inner();
        let start = stream::start(&mut inbound).await?;
        let container = some_id(start.id.clone())?;
        let exec = ExecStreamRequest {
            cmd: start.cmd.clone(),
            stdio: stream::stdio(&start),
        };
        let session = self
            .runtime
            .exec(&container, &exec)
            .await
            .map_err(to_status)?;
        Ok(Response::new(stream::pump(session, inbound)))
    }

    async fn attach(&self, request: Request<Streaming<StreamInput>>) -> Answer<Self::AttachStream> {
        let mut inbound = request.into_inner();
        let start = stream::start(&mut inbound).await?;
        let container = some_id(start.id.clone())?;
        let attach = AttachRequest {
            stdio: stream::stdio(&start),
        };
        let session = self
            .runtime
            .attach(&container, &attach)
            .await
            .map_err(to_status)?;
        Ok(Response::new(stream::pump(session, inbound)))
    }

    async fn handshake(&self, request: Request<HandshakeRequest>) -> Answer<HandshakeResponse> {
        let request = request.into_inner();
        tracing::debug!(
            node = request.node,
            protocol = request.protocol,
            "handshake"
        );
        let features = self.runtime.features();
        Ok(Response::new(HandshakeResponse {
            protocol: PROTOCOL,
            os: std::env::consts::OS.to_string(),
            architecture: oci_architecture().to_string(),
            handlers: vec![String::new()],
            features: Some(Features {
                recursive_read_only_mounts: features.recursive_read_only_mounts,
                user_namespaces: features.user_namespaces,
                supplemental_groups_policy: features.supplemental_groups_policy,
            }),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }))
    }

    async fn pull_image(&self, request: Request<PullImageRequest>) -> Answer<Json> {
        let request = request.into_inner();
        let pull = PullRequest {
            reference: request.reference,
            auth: request.auth.map(|a| RegistryAuth {
                username: a.username,
                password: a.password,
                auth: a.auth,
                identity_token: a.identity_token,
                registry_token: a.registry_token,
            }),
        };
        json_of(self.runtime.pull_image(&pull).await)
    }

    async fn image_status(&self, request: Request<ImageRef>) -> Answer<ImageStatusResponse> {
        let reference = request.into_inner().reference;
        let status = self.runtime.image_status(&reference).await;
        answer(status.and_then(|image| {
            Ok(ImageStatusResponse {
                image: image.map(|i| json(&i)).transpose()?,
            })
        }))
    }

    async fn list_images(&self, _: Request<Empty>) -> Answer<JsonList> {
        json_list(self.runtime.list_images().await)
    }

    async fn remove_image(&self, request: Request<ImageRef>) -> Answer<Empty> {
        empty(
            self.runtime
                .remove_image(&request.into_inner().reference)
                .await,
        )
    }

    async fn image_fs_info(&self, _: Request<Empty>) -> Answer<JsonList> {
        json_list(self.runtime.image_fs_info().await)
    }

    async fn run_pod_sandbox(&self, request: Request<RunPodSandboxRequest>) -> Answer<Json> {
        let request = request.into_inner();
        let pod = some_id(request.id)?;
        let spec: runtimes::types::SandboxSpec =
            from_json("SandboxSpec", request.spec).map_err(from_runtime)?;
        json_of(self.runtime.run_pod_sandbox(&pod, &spec).await)
    }

    async fn pod_sandbox_status(&self, request: Request<Id>) -> Answer<Json> {
        let pod = id(request.into_inner())?;
        json_of(self.runtime.pod_sandbox_status(&pod).await)
    }

    async fn pod_sandbox_stats(&self, request: Request<Id>) -> Answer<Json> {
        let pod = id(request.into_inner())?;
        json_of(self.runtime.pod_sandbox_stats(&pod).await)
    }

    async fn stop_pod_sandbox(&self, request: Request<Id>) -> Answer<Empty> {
        let pod = id(request.into_inner())?;
        empty(self.runtime.stop_pod_sandbox(&pod).await)
    }

    async fn remove_pod_sandbox(&self, request: Request<Id>) -> Answer<Empty> {
        let pod = id(request.into_inner())?;
        empty(self.runtime.remove_pod_sandbox(&pod).await)
    }

    async fn create_container(&self, request: Request<CreateContainerRequest>) -> Answer<Empty> {
        let request = request.into_inner();
        let sandbox = some_id(request.sandbox)?;
        let container = some_id(request.id)?;
        let spec: runtimes::types::ContainerSpec =
            from_json("ContainerSpec", request.spec).map_err(from_runtime)?;
        empty(
            self.runtime
                .create_container(&sandbox, &container, &spec)
                .await,
        )
    }

    async fn start_container(&self, request: Request<Id>) -> Answer<Empty> {
        let container = id(request.into_inner())?;
        empty(self.runtime.start_container(&container).await)
    }

    async fn stop_container(&self, request: Request<StopContainerRequest>) -> Answer<Empty> {
        let request = request.into_inner();
        let container = some_id(request.id)?;
        empty(
            self.runtime
                .stop_container(&container, millis(request.timeout_ms))
                .await,
        )
    }

    async fn remove_container(&self, request: Request<Id>) -> Answer<Empty> {
        let container = id(request.into_inner())?;
        empty(self.runtime.remove_container(&container).await)
    }

    async fn container_status(&self, request: Request<Id>) -> Answer<Json> {
        let container = id(request.into_inner())?;
        json_of(self.runtime.container_status(&container).await)
    }

    async fn container_stats(&self, request: Request<Id>) -> Answer<Json> {
        let container = id(request.into_inner())?;
        json_of(self.runtime.container_stats(&container).await)
    }

    async fn update_container_resources(
        &self,
        request: Request<UpdateResourcesRequest>,
    ) -> Answer<Empty> {
        let request = request.into_inner();
        let container = some_id(request.id)?;
        let resources: oci_spec::runtime::LinuxResources =
            from_json("LinuxResources", request.resources).map_err(from_runtime)?;
        empty(
            self.runtime
                .update_container_resources(&container, &resources)
                .await,
        )
    }

    async fn update_pod_sandbox_resources(
        &self,
        request: Request<UpdateResourcesRequest>,
    ) -> Answer<Empty> {
        let request = request.into_inner();
        let pod = some_id(request.id)?;
        let resources: oci_spec::runtime::LinuxResources =
            from_json("LinuxResources", request.resources).map_err(from_runtime)?;
        empty(
            self.runtime
                .update_pod_sandbox_resources(&pod, &resources)
                .await,
        )
    }

    async fn reopen_container_log(&self, request: Request<Id>) -> Answer<Empty> {
        let container = id(request.into_inner())?;
        empty(self.runtime.reopen_container_log(&container).await)
    }

    async fn exec_sync(&self, request: Request<ExecSyncRequest>) -> Answer<ExecSyncResponse> {
        let request = request.into_inner();
        let container = some_id(request.id)?;
        let exec = ExecRequest {
            cmd: request.cmd,
            timeout: (request.timeout_ms > 0).then(|| millis(request.timeout_ms)),
        };
        answer(
            self.runtime
                .exec_sync(&container, &exec)
                .await
                .map(|out| ExecSyncResponse {
                    stdout: out.stdout,
                    stderr: out.stderr,
                    exit_code: out.exit_code,
                }),
        )
    }
}

/// This machine's architecture as OCI image configs name it.
fn oci_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}
