//! CRI's `RuntimeService`: each verb hands its request to its own file and maps the
//! answer with [`answer`]; the lifecycle verbs then publish their container events
//! (`GetContainerEvents`, [`crate::cri::shared::events`]); a few verbs answer
//! `Unimplemented`.

use berth_proto::cri::v1::runtime_service_server::RuntimeService;
use berth_proto::cri::v1::*;
use tonic::{Request, Response, Status};

use super::streamed::streamed;
use super::unimplemented::not_in_this_version;
use crate::cri::shared::batches::BatchStream;
use crate::cri::shared::events::{container_target, pod_target, EventStream, Target};
use crate::cri::*;
use crate::status::answer;

/// The `RuntimeService` impl: the verbs written out in `answered`, one method per
/// `verb: Request => Response;` line of `delegated` that calls `verb::verb(self,
/// request)`, one `Stream*` verb (and its stream type) per line of `streamed` that
/// answers its `List*` twin's items in batches (the stream request's `filter`, when
/// the line names it, goes into the list request), and one per line of
/// `unimplemented` that answers `$why(name)`. (The impl is built whole inside the
/// macro so `async_trait` sees the generated methods.)
macro_rules! runtime_service {
    (
        answered { $($answered:tt)* }
        delegated { $($verb:ident : $req:ty => $resp:ty;)* }
        streamed {
            $($stream:ident : $stream_type:ident, $sreq:ty => $sresp:ident . $field:ident
                = $list:ident($lreq:ident { $($filter:ident)? }) . $items:ident;)*
        }
        unimplemented { $($missing:ident = $name:literal : $mreq:ty => $mresp:ty, $why:ident;)* }
    ) => {
        #[tonic::async_trait]
        impl RuntimeService for Cri {
            $($answered)*

            $(
                type $stream_type = BatchStream<$sresp>;

                async fn $stream(
                    &self,
                    request: Request<$sreq>,
                ) -> Result<Response<BatchStream<$sresp>>, Status> {
                    let _request = request.into_inner();
                    let listed = $list::$list(self, $lreq { $($filter: _request.$filter)? }).await;
                    streamed(listed, |all| all.$items, |$field| $sresp { $field })
                }
            )*

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

/// After a successful lifecycle verb, publishes its events about `target` (resolved
/// before the call, so a removed object is still known), then answers.
macro_rules! evented {
    ($cri:expr, $target:expr, $call:expr, [$($kind:ident),+]) => {{
        let target = if $cri.events.listened() { $target } else { None };
        let result = $call;
        if let (Ok(_), Some(t)) = (&result, &target) {
            $(
                $cri.events
                    .publish($cri, ContainerEventType::$kind, &t.container_id, &t.pod_id)
                    .await;
            )+
        }
        answer(result)
    }};
}

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

        type GetContainerEventsStream = EventStream;

        async fn get_container_events(
            &self,
            _: Request<GetEventsRequest>,
        ) -> Result<Response<EventStream>, Status> {
            Ok(Response::new(self.events.subscribe()))
        }

        async fn run_pod_sandbox(
            &self,
            request: Request<RunPodSandboxRequest>,
        ) -> Result<Response<RunPodSandboxResponse>, Status> {
            let result = run_pod_sandbox::run_pod_sandbox(self, request.into_inner()).await;
            if let Ok(r) = &result {
                let id = &r.pod_sandbox_id;
                for kind in [ContainerEventType::ContainerCreatedEvent, ContainerEventType::ContainerStartedEvent] {
                    self.events.publish(self, kind, id, id).await;
                }
            }
            answer(result)
        }

        async fn stop_pod_sandbox(
            &self,
            request: Request<StopPodSandboxRequest>,
        ) -> Result<Response<StopPodSandboxResponse>, Status> {
            let request = request.into_inner();
            evented!(self, pod_target(self, &request.pod_sandbox_id),
                stop_pod_sandbox::stop_pod_sandbox(self, request).await, [ContainerStoppedEvent])
        }

        async fn remove_pod_sandbox(
            &self,
            request: Request<RemovePodSandboxRequest>,
        ) -> Result<Response<RemovePodSandboxResponse>, Status> {
            let request = request.into_inner();
            evented!(self, pod_target(self, &request.pod_sandbox_id),
                remove_pod_sandbox::remove_pod_sandbox(self, request).await, [ContainerDeletedEvent])
        }

        async fn create_container(
            &self,
            request: Request<CreateContainerRequest>,
        ) -> Result<Response<CreateContainerResponse>, Status> {
            let pod_id = request.get_ref().pod_sandbox_id.clone();
            let result = create_container::create_container(self, request.into_inner()).await;
            if let (Ok(r), true) = (&result, self.events.listened()) {
                // The request may name the pod by an id prefix; the record has it whole.
                let t = container_target(self, &r.container_id).unwrap_or(Target {
                    container_id: r.container_id.clone(),
                    pod_id,
                });
                self.events
                    .publish(self, ContainerEventType::ContainerCreatedEvent, &t.container_id, &t.pod_id)
                    .await;
            }
            answer(result)
        }

        async fn start_container(
            &self,
            request: Request<StartContainerRequest>,
        ) -> Result<Response<StartContainerResponse>, Status> {
            let request = request.into_inner();
            evented!(self, container_target(self, &request.container_id),
                start_container::start_container(self, request).await, [ContainerStartedEvent])
        }

        async fn stop_container(
            &self,
            request: Request<StopContainerRequest>,
        ) -> Result<Response<StopContainerResponse>, Status> {
            let request = request.into_inner();
            evented!(self, container_target(self, &request.container_id),
                stop_container::stop_container(self, request).await, [ContainerStoppedEvent])
        }

        async fn remove_container(
            &self,
            request: Request<RemoveContainerRequest>,
        ) -> Result<Response<RemoveContainerResponse>, Status> {
            let request = request.into_inner();
            evented!(self, container_target(self, &request.container_id),
                remove_container::remove_container(self, request).await, [ContainerDeletedEvent])
        }
    }
    delegated {
        pod_sandbox_status: PodSandboxStatusRequest => PodSandboxStatusResponse;
        list_pod_sandbox: ListPodSandboxRequest => ListPodSandboxResponse;
        list_containers: ListContainersRequest => ListContainersResponse;
        container_status: ContainerStatusRequest => ContainerStatusResponse;
        update_container_resources: UpdateContainerResourcesRequest => UpdateContainerResourcesResponse;
        update_pod_sandbox_resources: UpdatePodSandboxResourcesRequest => UpdatePodSandboxResourcesResponse;
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
    streamed {
        stream_pod_sandboxes: StreamPodSandboxesStream,
            StreamPodSandboxesRequest => StreamPodSandboxesResponse.pod_sandboxes
            = list_pod_sandbox(ListPodSandboxRequest { filter }).items;
        stream_containers: StreamContainersStream,
            StreamContainersRequest => StreamContainersResponse.containers
            = list_containers(ListContainersRequest { filter }).containers;
        stream_container_stats: StreamContainerStatsStream,
            StreamContainerStatsRequest => StreamContainerStatsResponse.container_stats
            = list_container_stats(ListContainerStatsRequest { filter }).stats;
        stream_pod_sandbox_stats: StreamPodSandboxStatsStream,
            StreamPodSandboxStatsRequest => StreamPodSandboxStatsResponse.pod_sandbox_stats
            = list_pod_sandbox_stats(ListPodSandboxStatsRequest { filter }).stats;
        stream_pod_sandbox_metrics: StreamPodSandboxMetricsStream,
            StreamPodSandboxMetricsRequest => StreamPodSandboxMetricsResponse.pod_sandbox_metrics
            = list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {}).pod_metrics;
    }
    unimplemented {
        checkpoint_container = "CheckpointContainer":
            CheckpointContainerRequest => CheckpointContainerResponse, not_in_this_version;
        checkpoint_pod = "CheckpointPod":
            CheckpointPodRequest => CheckpointPodResponse, not_in_this_version;
        restore_pod = "RestorePod":
            RestorePodRequest => RestorePodResponse, not_in_this_version;
    }
}
