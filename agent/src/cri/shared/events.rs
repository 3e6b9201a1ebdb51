//! Container events for `GetContainerEvents` (kubelet's evented PLEG): each lifecycle
//! step of a container or pod sandbox, with the pod's status and its containers'
//! statuses as they are right after the step.
//!
//! Events go through a bounded broadcast channel, so berth never waits for a
//! subscriber: one that falls more than [`CAPACITY`] events behind loses its stream
//! (ended with `ABORTED`, and a log line), which kubelet answers by relisting. No
//! status is built while nobody subscribes.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Mutex, Weak};
use std::time::Duration;

use berth_proto::cri::v1::{
    ContainerEventResponse, ContainerEventType, ContainerStatus, ContainerStatusRequest,
    PodSandboxStatusRequest,
};
use futures::Stream;
use tokio::sync::broadcast::{self, error::RecvError};
use tonic::Status;

use super::container::listed_states;
use super::objects::{containers_of, find, now_nanos};
use crate::cri::container_status::container_status;
use crate::cri::pod_sandbox_status::pod_sandbox_status;
use crate::cri::Cri;
use crate::store::{ContainerRecord, Query, SandboxRecord};
use runtimes::types::ContainerState;

/// Events a subscriber may fall behind before its stream is ended.
pub(in crate::cri) const CAPACITY: usize = 1024;

/// The stream `GetContainerEvents` answers.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<ContainerEventResponse, Status>> + Send>>;

/// How often containers are checked for exits of their own while someone subscribes
/// (kubelet's generic PLEG relists as often).
pub(in crate::cri) const EXIT_CHECK: Duration = Duration::from_secs(1);

/// The node's event channel.
pub(in crate::cri) struct Events {
    tx: broadcast::Sender<ContainerEventResponse>,
    /// Containers whose stop was published (by StopContainer or by [`watch_exits`]),
    /// so an exit is published once.
    stopped: Mutex<HashSet<String>>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(CAPACITY).0,
            stopped: Mutex::default(),
        }
    }
}

/// Publishes a stop event for each container that exited on its own (its process
/// ended, or was OOM-killed), checked every [`EXIT_CHECK`] while someone subscribes,
/// with the batched state check the listings use (no call per container). Ends when
/// the services are gone.
pub(in crate::cri) async fn watch_exits(cri: Weak<Cri>) {
    let mut ticks = tokio::time::interval(EXIT_CHECK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut primed = false;
    loop {
        ticks.tick().await;
        let Some(cri) = cri.upgrade() else { return };
        if cri.nri.active() {
            nri_exits(&cri).await;
        }
        if !cri.events.listened() {
            // Exits while nobody listened are not news to a later subscriber.
            primed = false;
            continue;
        }
        cri.events.publish_exits(&cri, primed).await;
        primed = true;
    }
}

/// Sends NRI's `StopContainer` for containers that exited on their own.
async fn nri_exits(cri: &Cri) {
    let Ok(records) = cri.store.query::<ContainerRecord>(&Query::default()) else {
        return;
    };
    let fresh: Vec<_> = records
        .into_iter()
        .filter(|r| !cri.nri.stop_sent(&r.id))
        .collect();
    if fresh.is_empty() {
        return;
    }
    let states = listed_states(cri, &fresh).await;
    for (record, state) in fresh.iter().zip(states) {
        if state != ContainerState::Exited {
            continue;
        }
        if let Some((pod, mut container)) = cri.nri_objects(record) {
            container.state = berth_proto::nri::ContainerState::ContainerStopped as i32;
            cri.nri.stop_container(pod, container).await;
        }
    }
}

impl Events {
    /// One exit check: publishes a stop for each exited container not yet published
    /// (only notes them when `!publish`, the first check after nobody listened).
    pub(in crate::cri) async fn publish_exits(&self, cri: &Cri, publish: bool) {
        let Ok(records) = cri.store.query::<ContainerRecord>(&Query::default()) else {
            return;
        };
        let states = listed_states(cri, &records).await;
        let exited: Vec<(&str, &str)> = {
            let mut stopped = lock(&self.stopped);
            // Forget containers removed with their pods (no delete event of their own).
            stopped.retain(|id| records.iter().any(|r| &r.id == id));
            records
                .iter()
                .zip(states)
                .filter(|(r, s)| *s == ContainerState::Exited && !stopped.contains(&r.id))
                .map(|(r, _)| (r.id.as_str(), r.sandbox_id.as_str()))
                .collect()
        };
        for (id, pod) in exited {
            if publish {
                self.publish(cri, ContainerEventType::ContainerStoppedEvent, id, pod)
                    .await;
            } else {
                lock(&self.stopped).insert(id.to_string());
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
        match kind {
            // A stop is news once: StopContainer of a container that exited by itself
            // (or a second stop) publishes nothing.
            ContainerEventType::ContainerStoppedEvent
                if !lock(&self.stopped).insert(container_id.to_string()) =>
            {
                return;
            }
            ContainerEventType::ContainerDeletedEvent => {
                lock(&self.stopped).remove(container_id);
            }
            _ => {}
        }
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
    let Ok(records) = containers_of(&cri.store, pod_id) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for record in records {
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
    use berth_proto::cri::v1::runtime_service_server::RuntimeService;
    use berth_proto::cri::v1::*;
    use futures::StreamExt;
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
            berth_proto::cri::v1::ContainerState::ContainerRunning
        );
        assert!(got[5].containers_statuses.is_empty(), "{:?}", got[5]);
        assert!(got[7].pod_sandbox_status.is_none(), "{:?}", got[7]);
        assert!(got.windows(2).all(|w| w[0].created_at <= w[1].created_at));
    }

    #[tokio::test]
    async fn a_container_that_exits_by_itself_is_stopped_once() {
        let h = Harness::new().await;
        let pod = h.run_pod("web").await;
        let before = h.start(&pod, "before").await;
        let app = h.start(&pod, "app").await;
        h.mock.exit_container(&h.container_id_of(&before), 0);
        let mut events = h.cri.events.subscribe();
        // The first check after a subscriber came only notes what exited before.
        h.cri.events.publish_exits(&h.cri, false).await;
        h.mock.exit_container(&h.container_id_of(&app), 3);
        h.cri.events.publish_exits(&h.cri, true).await;
        h.cri.events.publish_exits(&h.cri, true).await;
        // kubelet then stops it: no second stop event.
        h.cri
            .stop_container(Request::new(StopContainerRequest {
                container_id: app.clone(),
                timeout: 0,
            }))
            .await
            .unwrap();
        h.cri
            .remove_container(Request::new(RemoveContainerRequest {
                container_id: app.clone(),
            }))
            .await
            .unwrap();
        let stopped = events.next().await.unwrap().unwrap();
        assert_eq!(
            (kind(&stopped), stopped.container_id.as_str()),
            (ContainerEventType::ContainerStoppedEvent, app.as_str())
        );
        let exited = stopped
            .containers_statuses
            .iter()
            .find(|c| c.id == app)
            .unwrap();
        assert_eq!(exited.exit_code, 3);
        let deleted = events.next().await.unwrap().unwrap();
        assert_eq!(kind(&deleted), ContainerEventType::ContainerDeletedEvent);
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
