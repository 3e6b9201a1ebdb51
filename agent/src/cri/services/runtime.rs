//! CRI's `RuntimeService`: each verb hands its request to its own file and maps the
//! answer with [`answer`]; a few verbs answer `Unimplemented`.

use k8s_cri::v1::runtime_service_server::RuntimeService;
use k8s_cri::v1::*;
use tonic::{Request, Response, Status};

use super::unimplemented::not_in_this_version;
use crate::cri::*;
use crate::status::answer;

/// The `RuntimeService` impl: the verbs written out in `answered`, one method per
/// `verb: Request => Response;` line of `delegated` that calls `verb::verb(self,
/// request)`, and one per line of `unimplemented` that answers `$why(name)`. (The
/// impl is built whole inside the macro so `async_trait` sees the generated methods.)
macro_rules! runtime_service {
    (
        answered { $($answered:tt)* }
        delegated { $($verb:ident : $req:ty => $resp:ty;)* }
        unimplemented { $($missing:ident = $name:literal : $mreq:ty => $mresp:ty, $why:ident;)* }
    ) => {
        #[tonic::async_trait]
        impl RuntimeService for Cri {
            $($answered)*

            $(
                async fn $verb(&self, request: Request<$req>) -> Result<Response<$resp>, Status> {
                    answer($verb::$verb(self, request.into_inner()).await)
                }
            )*

            $(
                async fn $missing(&self, _: Request<$mreq>) -> Result<Response<$mresp>, Status> {
                    Err($why($name))
                }
            )*
        }
    };
}

/// The type of `GetContainerEvents`' stream; the verb is not implemented yet.
type ContainerEvents = tokio_stream::Empty<Result<ContainerEventResponse, Status>>;

runtime_service! {
    answered {
        async fn version(
            &self,
            request: Request<VersionRequest>,
        ) -> Result<Response<VersionResponse>, Status> {
            Ok(Response::new(version::version(request.into_inner())))
        }

        async fn status(
            &self,
            request: Request<StatusRequest>,
        ) -> Result<Response<StatusResponse>, Status> {
            let readiness: Vec<(String, Result<(), String>)> = self
                .runtime
                .handler_readiness()
                .await
                .into_iter()
                .map(|(name, ready)| (name, ready.map_err(|e| e.to_string())))
                .collect();
            let answer = status::status(
                self.runtime.as_ref(),
                &self.network_ready,
                &self.handlers,
                &readiness,
                &self.config_json,
                request.into_inner(),
            );
            Ok(Response::new(answer.await))
        }

        async fn runtime_config(
            &self,
            request: Request<RuntimeConfigRequest>,
        ) -> Result<Response<RuntimeConfigResponse>, Status> {
            Ok(Response::new(runtime_config::runtime_config(request.into_inner())))
        }

        type GetContainerEventsStream = ContainerEvents;

        async fn get_container_events(
            &self,
            _: Request<GetEventsRequest>,
        ) -> Result<Response<ContainerEvents>, Status> {
            Err(not_in_this_version("GetContainerEvents"))
        }
    }
    delegated {
        run_pod_sandbox: RunPodSandboxRequest => RunPodSandboxResponse;
        stop_pod_sandbox: StopPodSandboxRequest => StopPodSandboxResponse;
        remove_pod_sandbox: RemovePodSandboxRequest => RemovePodSandboxResponse;
        pod_sandbox_status: PodSandboxStatusRequest => PodSandboxStatusResponse;
        list_pod_sandbox: ListPodSandboxRequest => ListPodSandboxResponse;
        create_container: CreateContainerRequest => CreateContainerResponse;
        start_container: StartContainerRequest => StartContainerResponse;
        stop_container: StopContainerRequest => StopContainerResponse;
        remove_container: RemoveContainerRequest => RemoveContainerResponse;
        list_containers: ListContainersRequest => ListContainersResponse;
        container_status: ContainerStatusRequest => ContainerStatusResponse;
        update_container_resources: UpdateContainerResourcesRequest => UpdateContainerResourcesResponse;
        reopen_container_log: ReopenContainerLogRequest => ReopenContainerLogResponse;
        exec_sync: ExecSyncRequest => ExecSyncResponse;
        container_stats: ContainerStatsRequest => ContainerStatsResponse;
        list_container_stats: ListContainerStatsRequest => ListContainerStatsResponse;
        pod_sandbox_stats: PodSandboxStatsRequest => PodSandboxStatsResponse;
        list_pod_sandbox_stats: ListPodSandboxStatsRequest => ListPodSandboxStatsResponse;
        exec: ExecRequest => ExecResponse;
        attach: AttachRequest => AttachResponse;
        port_forward: PortForwardRequest => PortForwardResponse;
        update_runtime_config: UpdateRuntimeConfigRequest => UpdateRuntimeConfigResponse;
        list_metric_descriptors: ListMetricDescriptorsRequest => ListMetricDescriptorsResponse;
        list_pod_sandbox_metrics: ListPodSandboxMetricsRequest => ListPodSandboxMetricsResponse;
    }
    unimplemented {
        checkpoint_container = "CheckpointContainer":
            CheckpointContainerRequest => CheckpointContainerResponse, not_in_this_version;
    }
}
