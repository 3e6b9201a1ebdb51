//! `StopPodSandbox`.

use std::time::Duration;

use futures::future::join_all;
use k8s_cri::v1::{StopPodSandboxRequest, StopPodSandboxResponse};
use runtimes::Runtime;

use super::shared::objects::{combine, find, visible};
use super::stop_container::stop as stop_one;
use super::Cri;
use crate::store::{ContainerRecord, SandboxPhase, SandboxRecord};

const METHOD: &str = "StopPodSandbox";

/// Stops the pod: kills its containers at once (as containerd), then stops the
/// sandbox (its network goes), then records it not ready. Stopping an unknown or
/// stopped pod succeeds.
pub(super) async fn stop_pod_sandbox(
    cri: &Cri,
    request: StopPodSandboxRequest,
) -> runtimes::Result<StopPodSandboxResponse> {
    if let Some(record) = find::<SandboxRecord>(&cri.store, METHOD, &request.pod_sandbox_id)? {
        stop(cri, &record).await?;
    }
    Ok(StopPodSandboxResponse {})
}

/// Stops every container of `sandbox` and then the sandbox, trying each step even
/// after one failed; reports every failure.
pub(super) async fn stop(cri: &Cri, sandbox: &SandboxRecord) -> runtimes::Result<()> {
    let containers: Vec<ContainerRecord> = visible::<ContainerRecord>(&cri.store)?
        .into_iter()
        .filter(|c| c.sandbox_id == sandbox.id)
        .collect();
    let stopped = join_all(
        containers
            .iter()
            .map(|c| stop_one(cri, &c.container_id, Duration::ZERO)),
    )
    .await;
    let mut errors: Vec<_> = stopped.into_iter().filter_map(Result::err).collect();
    match cri.runtime.stop_pod_sandbox(&sandbox.container_id).await {
        Ok(()) => {
            errors.extend(
                cri.store
                    .update::<SandboxRecord>(&sandbox.id, |r| r.phase = SandboxPhase::NotReady)
                    .err(),
            );
        }
        Err(err) if err.is_not_found() => {}
        Err(err) => errors.push(err),
    }
    combine(
        &format!(
            "stopping pod sandbox {} ({})",
            sandbox.id, sandbox.container_id
        ),
        errors,
    )
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
    async fn stops_the_containers_then_the_pod() {
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
        let last = h.mock.calls().last().cloned().unwrap();
        assert_eq!(last.operation, "stop_pod_sandbox");
        // Again, and for ids nobody knows.
        stop_pod_sandbox(&h.cri, request(&pod)).await.unwrap();
        stop_pod_sandbox(&h.cri, request("9b7c1d2e-5f"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn every_failure_is_reported_and_the_pod_stays_ready() {
        let h = Harness::new().await;
        let pod = h.run_pod("web").await;
        h.start(&pod, "a").await;
        h.mock.fail("stop_container", || {
            runtimes::Error::backend("mock", "kill a failed")
        });
        h.mock.fail("stop_pod_sandbox", || {
            runtimes::Error::backend("mock", "CNI DEL failed")
        });
        let err = stop_pod_sandbox(&h.cri, request(&pod)).await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("kill a failed") && text.contains("CNI DEL failed"),
            "{text}"
        );
        assert!(text.contains(&pod), "{text}");
        let record = h.store().get::<SandboxRecord>(&pod).unwrap().unwrap();
        assert_eq!(record.phase, SandboxPhase::Ready);
    }
}
