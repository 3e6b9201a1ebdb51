//! Container events for `GetContainerEvents` (kubelet's evented PLEG): each lifecycle
//! step of a container or pod sandbox, with the pod's status and its containers'
//! statuses as they are right after the step.
//!
//! Events go through a bounded broadcast channel, so berth never waits for a
//! subscriber: one that falls more than [`CAPACITY`] events behind loses its stream
//! (ended with `ABORTED`, and a log line), which kubelet answers by relisting. No
//! status is built while nobody subscribes.

use std::pin::Pin;

use futures::Stream;
use k8s_cri::v1::{
    ContainerEventResponse, ContainerEventType, ContainerStatus, ContainerStatusRequest,
    PodSandboxStatusRequest,
};
use tokio::sync::broadcast::{self, error::RecvError};
use tonic::Status;

use super::objects::{find, now_nanos, visible};
use crate::cri::container_status::container_status;
use crate::cri::pod_sandbox_status::pod_sandbox_status;
use crate::cri::Cri;
use crate::store::{ContainerRecord, SandboxRecord};

/// Events a subscriber may fall behind before its stream is ended.
pub(in crate::cri) const CAPACITY: usize = 1024;

/// The stream `GetContainerEvents` answers.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<ContainerEventResponse, Status>> + Send>>;

/// The node's event channel.
pub(in crate::cri) struct Events {
    tx: broadcast::Sender<ContainerEventResponse>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

impl Events {
    /// A new subscriber's stream: every event from now on.
    pub(in crate::cri) fn subscribe(&self) -> EventStream {
        let rx = self.tx.subscribe();
        Box::pin(futures::stream::unfold(Some(rx), |rx| async move {
            let mut rx = rx?;
            match rx.recv().await {
                Ok(event) => Some((Ok(event), Some(rx))),
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "a GetContainerEvents subscriber fell behind; its stream is ended so it relists"
                    );
                    let why = format!(
                        "GetContainerEvents: this stream fell {missed} events behind and lost them; \
                         list containers and subscribe again"
                    );
                    Some((Err(Status::aborted(why)), None))
                }
                Err(RecvError::Closed) => None,
            }
        }))
    }

    /// Publishes `kind` for the container (or, when `container_id == pod_id`, the pod
    /// sandbox) with `pod_id`'s status and its containers' statuses. Nothing is read
    /// when nobody listens.
    pub(in crate::cri) async fn publish(
        &self,
        cri: &Cri,
        kind: ContainerEventType,
        container_id: &str,
        pod_id: &str,
    ) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        let pod_sandbox_status = pod_sandbox_status(
            cri,
            PodSandboxStatusRequest {
                pod_sandbox_id: pod_id.to_string(),
                verbose: false,
            },
        )
        .await
        .ok()
        .and_then(|r| r.status);
        let event = ContainerEventResponse {
            container_id: container_id.to_string(),
            container_event_type: kind.into(),
            created_at: now_nanos(),
            pod_sandbox_status,
            containers_statuses: statuses_of(cri, pod_id).await,
        };
        // An error only means every subscriber left since the check.
        let _ = self.tx.send(event);
    }
}

/// Which object an event is about: a container and its pod, or a pod sandbox (whose
/// events carry its own id as the container id, as containerd's do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::cri) struct Target {
    pub container_id: String,
    pub pod_id: String,
}

impl Events {
    /// Whether anyone listens (so a caller can skip resolving ids for nothing).
    pub(in crate::cri) fn listened(&self) -> bool {
        self.tx.receiver_count() > 0
    }
}

/// The container `id` (or unique id prefix) names, if it exists.
pub(in crate::cri) fn container_target(cri: &Cri, id: &str) -> Option<Target> {
    let record: ContainerRecord = find(&cri.store, "GetContainerEvents", id).ok()??;
    Some(Target {
        container_id: record.id,
        pod_id: record.sandbox_id,
    })
}

/// The pod sandbox `id` (or unique id prefix) names, if it exists.
pub(in crate::cri) fn pod_target(cri: &Cri, id: &str) -> Option<Target> {
    let record: SandboxRecord = find(&cri.store, "GetContainerEvents", id).ok()??;
    Some(Target {
        container_id: record.id.clone(),
        pod_id: record.id,
    })
}

/// The statuses of the pod's containers now (one that vanishes meanwhile is left out).
async fn statuses_of(cri: &Cri, pod_id: &str) -> Vec<ContainerStatus> {
    let Ok(records) = visible::<ContainerRecord>(&cri.store) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for record in records.into_iter().filter(|c| c.sandbox_id == pod_id) {
        let request = ContainerStatusRequest {
            container_id: record.id,
            verbose: false,
        };
        if let Ok(answer) = container_status(cri, request).await {
            out.extend(answer.status);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use k8s_cri::v1::runtime_service_server::RuntimeService;
    use k8s_cri::v1::*;
    use tonic::Request;

    use super::*;
    use crate::cri::shared::sandbox_spec::tests::request;
    use crate::cri::testing::{container_request, Harness};

    fn kind(e: &ContainerEventResponse) -> ContainerEventType {
        e.container_event_type()
    }

    #[tokio::test]
    async fn each_lifecycle_step_is_an_event_with_the_pods_statuses() {
        let h = Harness::new().await;
        let cri = &h.cri;
        let mut events = cri
            .get_container_events(Request::new(GetEventsRequest {}))
            .await
            .unwrap()
            .into_inner();
        let pod = cri
            .run_pod_sandbox(Request::new(request("web")))
            .await
            .unwrap()
            .into_inner()
            .pod_sandbox_id;
        let id = cri
            .create_container(Request::new(container_request(&pod, "app", 0)))
            .await
            .unwrap()
            .into_inner()
            .container_id;
        // Prefixes name the objects; events carry whole ids.
        let short = id[..12].to_string();
        cri.start_container(Request::new(StartContainerRequest {
            container_id: short.clone(),
        }))
        .await
        .unwrap();
        cri.stop_container(Request::new(StopContainerRequest {
            container_id: short.clone(),
            timeout: 0,
        }))
        .await
        .unwrap();
        cri.remove_container(Request::new(RemoveContainerRequest {
            container_id: short,
        }))
        .await
        .unwrap();
        // Teardown of what is gone publishes nothing.
        cri.remove_container(Request::new(RemoveContainerRequest {
            container_id: id.clone(),
        }))
        .await
        .unwrap();
        cri.stop_pod_sandbox(Request::new(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        }))
        .await
        .unwrap();
        cri.remove_pod_sandbox(Request::new(RemovePodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        }))
        .await
        .unwrap();

        use ContainerEventType::*;
        let want = [
            (ContainerCreatedEvent, &pod),
            (ContainerStartedEvent, &pod),
            (ContainerCreatedEvent, &id),
            (ContainerStartedEvent, &id),
            (ContainerStoppedEvent, &id),
            (ContainerDeletedEvent, &id),
            (ContainerStoppedEvent, &pod),
            (ContainerDeletedEvent, &pod),
        ];
        let mut got = Vec::new();
        for _ in want {
            got.push(events.next().await.unwrap().unwrap());
        }
        let seen: Vec<_> = got.iter().map(|e| (kind(e), &e.container_id)).collect();
        assert_eq!(seen, want);
        let started = &got[3];
        assert_eq!(started.pod_sandbox_status.as_ref().unwrap().id, pod);
        assert_eq!(started.containers_statuses.len(), 1);
        assert_eq!(started.containers_statuses[0].id, id);
        assert_eq!(
            started.containers_statuses[0].state(),
            ContainerState::ContainerRunning
        );
        assert!(got[5].containers_statuses.is_empty(), "{:?}", got[5]);
        assert!(got[7].pod_sandbox_status.is_none(), "{:?}", got[7]);
        assert!(got.windows(2).all(|w| w[0].created_at <= w[1].created_at));
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_loses_its_stream_and_others_go_on() {
        let h = Harness::new().await;
        let pod = h.run_pod("web").await;
        let mut slow = h.cri.events.subscribe();
        let mut late = None;
        for i in 0..CAPACITY + 3 {
            if i == CAPACITY + 1 {
                late = Some(h.cri.events.subscribe());
            }
            h.cri
                .events
                .publish(
                    &h.cri,
                    ContainerEventType::ContainerStartedEvent,
                    &pod,
                    &pod,
                )
                .await;
        }
        let err = slow.next().await.unwrap().unwrap_err();
        assert_eq!(err.code(), tonic::Code::Aborted);
        assert!(err.message().contains("fell 3 events behind"), "{err:?}");
        assert!(slow.next().await.is_none());
        let mut late = late.unwrap();
        assert!(late.next().await.unwrap().is_ok());
        assert!(late.next().await.unwrap().is_ok());
    }
}
