//! `StopContainer`.

use std::time::Duration;

use berth_proto::cri::v1::{StopContainerRequest, StopContainerResponse};
use runtimes::{ContainerId, Runtime};

use super::shared::objects::find;
use super::Cri;
use crate::store::ContainerRecord;

const METHOD: &str = "StopContainer";

/// Stops the container: its stop signal, then SIGKILL after the request's timeout (0
/// kills at once; a negative timeout counts as 0). Stopping an unknown or already
/// stopped container succeeds (critest's idempotence specs).
pub(super) async fn stop_container(
    cri: &Cri,
    request: StopContainerRequest,
) -> runtimes::Result<StopContainerResponse> {
    let _nri = cri.nri.block().await;
    if let Some(record) = find::<ContainerRecord>(&cri.store, METHOD, &request.container_id)? {
        let seconds = u64::try_from(request.timeout).unwrap_or(0);
        stop(cri, &record.container_id, Duration::from_secs(seconds)).await?;
        if let Some((pod, container)) = cri.nri_objects(&record) {
            cri.nri.stop_container(pod, container).await;
        }
    }
    Ok(StopContainerResponse {})
}

/// Stops the container `id`; one its backend no longer knows is stopped already.
pub(super) async fn stop(cri: &Cri, id: &ContainerId, timeout: Duration) -> runtimes::Result<()> {
    match cri.runtime.stop_container(id, timeout).await {
        Err(err) if err.is_not_found() => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use runtimes::types::ContainerState;

    use super::*;
    use crate::cri::testing::Harness;

    fn request(id: &str, timeout: i64) -> StopContainerRequest {
        StopContainerRequest {
            container_id: id.into(),
            timeout,
        }
    }

    #[tokio::test]
    async fn stops_a_running_container_and_is_idempotent() {
        let h = Harness::new().await;
        let (_, id) = h.running_app().await;
        stop_container(&h.cri, request(&id, 10)).await.unwrap();
        let cid = h.container_id_of(&id);
        assert_eq!(h.mock.container_state(&cid), Some(ContainerState::Exited));
        stop_container(&h.cri, request(&id, 0)).await.unwrap();
        stop_container(&h.cri, request(&id, -5)).await.unwrap();
    }

    #[tokio::test]
    async fn an_unknown_container_stops_fine() {
        let h = Harness::new().await;
        stop_container(&h.cri, request("6e0f2a1b-unknown", 0))
            .await
            .unwrap();
        assert!(!h.called("stop_container"));
    }

    #[tokio::test]
    async fn one_the_backend_lost_stops_fine() {
        let h = Harness::new().await;
        let (_, id) = h.running_app().await;
        h.mock.fail("stop_container", || {
            runtimes::Error::not_found("container", "x")
        });
        stop_container(&h.cri, request(&id, 0)).await.unwrap();
        h.mock.fail("stop_container", || {
            runtimes::Error::backend("mock", "kill failed")
        });
        let err = stop_container(&h.cri, request(&id, 0)).await.unwrap_err();
        assert!(err.to_string().contains("kill failed"));
    }
}
