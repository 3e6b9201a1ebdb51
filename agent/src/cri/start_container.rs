//! `StartContainer`.

use berth_proto::cri::v1::{StartContainerRequest, StartContainerResponse};
use berth_proto::nri::Event;
use runtimes::types::ContainerState;
use runtimes::Runtime;

use super::shared::objects::resolve;
use super::Cri;
use crate::store::ContainerRecord;

const METHOD: &str = "StartContainer";

/// Starts the created container; an unknown one is `NotFound`.
pub(super) async fn start_container(
    cri: &Cri,
    request: StartContainerRequest,
) -> runtimes::Result<StartContainerResponse> {
    let _nri = cri.nri.block().await;
    let record: ContainerRecord = resolve(&cri.store, METHOD, &request.container_id)?;
    let nri = cri.nri_objects(&record);
    if let Some((pod, container)) = nri.clone() {
        cri.nri
            .container_event(Event::StartContainer, pod, container)
            .await;
    }
    cri.runtime.start_container(&record.container_id).await?;
    // Seen running now (the metrics count it so before the next listing).
    cri.store
        .set_container_state(&record.id, ContainerState::Running, None);
    if let Some((pod, mut container)) = nri {
        container.state = berth_proto::nri::ContainerState::ContainerRunning as i32;
        cri.nri
            .container_event(Event::PostStartContainer, pod, container)
            .await;
    }
    Ok(StartContainerResponse {})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::testing::Harness;

    #[tokio::test]
    async fn starts_a_created_container_and_refuses_unknown_ones() {
        let h = Harness::new().await;
        let pod = h.run_pod("web").await;
        let id = h.create(&pod, "app").await;
        start_container(
            &h.cri,
            StartContainerRequest {
                container_id: id.clone(),
            },
        )
        .await
        .unwrap();
        let cid = h.container_id_of(&id);
        assert_eq!(h.mock.container_state(&cid), Some(ContainerState::Running));
        // A second start is the backend's to refuse.
        let again = start_container(&h.cri, StartContainerRequest { container_id: id })
            .await
            .unwrap_err();
        assert!(
            matches!(again, runtimes::Error::FailedPrecondition(_)),
            "{again:?}"
        );
        let unknown = start_container(
            &h.cri,
            StartContainerRequest {
                container_id: "no-such-container".into(),
            },
        )
        .await
        .unwrap_err();
        assert!(unknown.is_not_found(), "{unknown:?}");
    }
}
