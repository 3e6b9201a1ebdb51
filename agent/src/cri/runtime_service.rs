//! CRI's `RuntimeService`: `Version`, `Status` and `RuntimeConfig` are answered here;
//! every pod and container verb answers `Unimplemented` until the youki backend lands.

use k8s_cri::v1::runtime_service_server::RuntimeService;
use k8s_cri::v1::*;
use tonic::{Request, Response, Status};

use super::unimplemented::pods_and_containers;
use super::{runtime_config, runtime_status, version, Cri};

/// The `RuntimeService` impl: the verbs written out in `answered`, plus one method per
/// `verb = "Name": Request -> Response;` line that answers
/// [`pods_and_containers`]. (The impl is built whole inside the macro so
/// `async_trait` sees the generated methods.)
macro_rules! runtime_service {
    (
        answered { $($answered:tt)* }
        not_in_this_version { $($verb:ident = $name:literal : $req:ty => $resp:ty;)* }
    ) => {
        #[tonic::async_trait]
        impl RuntimeService for Cri {
            $($answered)*

            $(
                async fn $verb(&self, _: Request<$req>) -> Result<Response<$resp>, Status> {
                    Err(pods_and_containers($name))
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
            let answer = runtime_status::status(
                self.runtime.as_ref(),
                &self.handlers,
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
            Err(pods_and_containers("GetContainerEvents"))
        }
    }
    not_in_this_version {
        run_pod_sandbox = "RunPodSandbox": RunPodSandboxRequest => RunPodSandboxResponse;
        stop_pod_sandbox = "StopPodSandbox": StopPodSandboxRequest => StopPodSandboxResponse;
        remove_pod_sandbox = "RemovePodSandbox": RemovePodSandboxRequest => RemovePodSandboxResponse;
        pod_sandbox_status = "PodSandboxStatus": PodSandboxStatusRequest => PodSandboxStatusResponse;
        list_pod_sandbox = "ListPodSandbox": ListPodSandboxRequest => ListPodSandboxResponse;
        create_container = "CreateContainer": CreateContainerRequest => CreateContainerResponse;
        start_container = "StartContainer": StartContainerRequest => StartContainerResponse;
        stop_container = "StopContainer": StopContainerRequest => StopContainerResponse;
        remove_container = "RemoveContainer": RemoveContainerRequest => RemoveContainerResponse;
        list_containers = "ListContainers": ListContainersRequest => ListContainersResponse;
        container_status = "ContainerStatus": ContainerStatusRequest => ContainerStatusResponse;
        update_container_resources = "UpdateContainerResources":
            UpdateContainerResourcesRequest => UpdateContainerResourcesResponse;
        reopen_container_log = "ReopenContainerLog": ReopenContainerLogRequest => ReopenContainerLogResponse;
        exec_sync = "ExecSync": ExecSyncRequest => ExecSyncResponse;
        exec = "Exec": ExecRequest => ExecResponse;
        attach = "Attach": AttachRequest => AttachResponse;
        port_forward = "PortForward": PortForwardRequest => PortForwardResponse;
        container_stats = "ContainerStats": ContainerStatsRequest => ContainerStatsResponse;
        list_container_stats = "ListContainerStats": ListContainerStatsRequest => ListContainerStatsResponse;
        pod_sandbox_stats = "PodSandboxStats": PodSandboxStatsRequest => PodSandboxStatsResponse;
        list_pod_sandbox_stats = "ListPodSandboxStats": ListPodSandboxStatsRequest => ListPodSandboxStatsResponse;
        // The pod CIDR kubelet sends is for pod networking, which comes with the pods.
        update_runtime_config = "UpdateRuntimeConfig": UpdateRuntimeConfigRequest => UpdateRuntimeConfigResponse;
        checkpoint_container = "CheckpointContainer": CheckpointContainerRequest => CheckpointContainerResponse;
        list_metric_descriptors = "ListMetricDescriptors": ListMetricDescriptorsRequest => ListMetricDescriptorsResponse;
        list_pod_sandbox_metrics = "ListPodSandboxMetrics": ListPodSandboxMetricsRequest => ListPodSandboxMetricsResponse;
    }
}
