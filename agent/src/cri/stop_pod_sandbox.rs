//! `StopPodSandbox`.

use berth_proto::cri::v1::{StopPodSandboxRequest, StopPodSandboxResponse};
use runtimes::Runtime;

use std::time::Duration;

use super::shared::objects::{find, visible};
use super::stop_container::stop;
use super::Cri;
use crate::store::{ContainerRecord, SandboxPhase, SandboxRecord};

const METHOD: &str = "StopPodSandbox";

/// Stops the pod, then records it not ready. Stopping an unknown or stopped pod
/// succeeds.
pub(super) async fn stop_pod_sandbox(
    cri: &Cri,
    request: StopPodSandboxRequest,
) -> runtimes::Result<StopPodSandboxResponse> {
    let _nri = cri.nri.block().await;
    let Some(record) = find::<SandboxRecord>(&cri.store, METHOD, &request.pod_sandbox_id)? else {
        return Ok(StopPodSandboxResponse {});
    };
    if record.phase == SandboxPhase::Ready && cri.nri.active() {
        nri_stop(cri, &record).await?;
    }
    // The backend owns the teardown (the `Runtime` contract: every process of the pod,
    // its containers at once, then its network); the agent only records the outcome.
    // The containers' exits stay the backend's to report.
    match cri.runtime.stop_pod_sandbox(&record.container_id).await {
        Ok(()) => {
            cri.store
                .update::<SandboxRecord>(&record.id, |r| r.phase = SandboxPhase::NotReady)?;
        }
        Err(err) if err.is_not_found() => {}
        Err(err) => return Err(err),
    }
    Ok(StopPodSandboxResponse {})
}

/// NRI's order (containerd's): the pod's containers are stopped (and plugins hear
/// of it), then plugins hear of the pod's stop while it still exists, then the
/// backend stops it. Sent once: only a ready pod's stop is news.
pub(super) async fn nri_stop(cri: &Cri, record: &SandboxRecord) -> runtimes::Result<()> {
    let containers: Vec<ContainerRecord> = visible::<ContainerRecord>(&cri.store)?
        .into_iter()
        .filter(|c| c.sandbox_id == record.id)
        .collect();
    let pod = crate::nri::pod_of(record);
    for container in &containers {
        if let Err(err) = stop(cri, &container.container_id, Duration::ZERO).await {
            tracing::warn!(id = container.id, error = %err, "stopping a container of a stopping pod");
        }
        cri.nri
            .stop_container(pod.clone(), crate::nri::container_of(container))
            .await;
    }
    cri.nri.stop_pod_sandbox(pod).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use runtimes::types::{ContainerState, SandboxState};

    use super::*;
    use crate::cri::testing::Harness;

    fn request(id: &str) -> StopPodSandboxRequest {
        StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        }
    }

    #[tokio::test]
    async fn the_backend_stops_the_pod_with_its_containers() {
        let h = Harness::new().await;
        let pod = h.run_pod("web").await;
        let running = h.start(&pod, "a").await;
        let created = h.create(&pod, "b").await;
        stop_pod_sandbox(&h.cri, request(&pod)).await.unwrap();
        let record = h.store().get::<SandboxRecord>(&pod).unwrap().unwrap();
        assert_eq!(record.phase, SandboxPhase::NotReady);
        assert_eq!(
            h.mock.sandbox_state(&record.container_id),
            Some(SandboxState::NotReady)
        );
        let state = |id: &str| {
            let cid = h.container_id_of(id);
            h.mock.container_state(&cid)
        };
        assert_eq!(state(&running), Some(ContainerState::Exited));
        assert_eq!(state(&created), Some(ContainerState::Created));
        // The backend owns the teardown: the agent stops no container itself.
        assert!(!h.called("stop_container"));
        let last = h.mock.calls().last().cloned().unwrap();
        assert_eq!(last.operation, "stop_pod_sandbox");
        // Again, and for ids nobody knows.
        stop_pod_sandbox(&h.cri, request(&pod)).await.unwrap();
        stop_pod_sandbox(&h.cri, request("9b7c1d2e-5f"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_failure_is_reported_and_the_pod_stays_ready() {
        let h = Harness::new().await;
        let pod = h.run_pod("web").await;
        h.start(&pod, "a").await;
        h.mock.fail("stop_pod_sandbox", || {
            runtimes::Error::backend("mock", "CNI DEL failed")
        });
        let err = stop_pod_sandbox(&h.cri, request(&pod)).await.unwrap_err();
        assert!(err.to_string().contains("CNI DEL failed"), "{err}");
        let record = h.store().get::<SandboxRecord>(&pod).unwrap().unwrap();
        assert_eq!(record.phase, SandboxPhase::Ready);
    }
}
