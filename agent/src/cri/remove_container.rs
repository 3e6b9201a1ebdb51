//! `RemoveContainer`.

use std::time::Duration;

use berth_proto::cri::v1::{RemoveContainerRequest, RemoveContainerResponse};
use runtimes::types::ContainerState;
use runtimes::Runtime;

use super::shared::objects::find;
use super::stop_container::stop;
use super::Cri;
use crate::store::ContainerRecord;

const METHOD: &str = "RemoveContainer";

/// Removes the container, killing it first when it still runs (as containerd's
/// forced removal). Removing an unknown container succeeds.
pub(super) async fn remove_container(
    cri: &Cri,
    request: RemoveContainerRequest,
) -> runtimes::Result<RemoveContainerResponse> {
    let _nri = cri.nri.block().await;
    if let Some(record) = find::<ContainerRecord>(&cri.store, METHOD, &request.container_id)? {
        let nri = cri.nri_objects(&record);
        remove(cri, &record).await?;
        if let Some((pod, container)) = nri {
            // A container removed without a stop seen first stopped too.
            cri.nri.stop_container(pod.clone(), container.clone()).await;
            cri.nri
                .container_event(berth_proto::nri::Event::RemoveContainer, pod, container)
                .await;
        }
    }
    Ok(RemoveContainerResponse {})
}

/// Kills `record`'s container if it may run, removes it from its backend, then drops
/// the record and its ContainerId. The record stays when the backend fails, so the
/// removal can be retried.
async fn remove(cri: &Cri, record: &ContainerRecord) -> runtimes::Result<()> {
    let id = &record.container_id;
    let stopped = match cri.runtime.container_status(id).await {
        Ok(status) => matches!(
            status.state,
            ContainerState::Created | ContainerState::Exited
        ),
        Err(err) => err.is_not_found(),
    };
    if !stopped {
        stop(cri, id, Duration::ZERO).await?;
    }
    match cri.runtime.remove_container(id).await {
        Err(err) if !err.is_not_found() => return Err(err),
        _ => {}
    }
    cri.cpu.forget(&record.id);
    cri.store.remove::<ContainerRecord>(&record.id)?;
    cri.encoded_containers.forget([record.id.as_str()]);
    crate::memory::freed();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::testing::Harness;

    fn request(id: &str) -> RemoveContainerRequest {
        RemoveContainerRequest {
            container_id: id.into(),
        }
    }

    #[tokio::test]
    async fn removes_a_running_container_after_killing_it() {
        let h = Harness::new().await;
        let (_, id) = h.running_app().await;
        let cid = h.container_id_of(&id);
        remove_container(&h.cri, request(&id)).await.unwrap();
        let ops: Vec<_> = h
            .mock
            .call_summary()
            .into_iter()
            .filter(|(_, _, target)| *target == cid.to_string())
            .map(|(_, op, _)| op)
            .collect();
        assert_eq!(
            ops,
            [
                "create_container",
                "start_container",
                "container_status",
                "stop_container",
                "remove_container"
            ]
        );
        assert!(h.mock.container_state(&cid).is_none());
        assert!(h.store().get::<ContainerRecord>(&id).unwrap().is_none());
        assert!(!h.store().allocated_ids().unwrap().contains_key(&cid));
        // Idempotent.
        remove_container(&h.cri, request(&id)).await.unwrap();
    }

    #[tokio::test]
    async fn a_created_container_is_removed_without_a_stop() {
        let h = Harness::new().await;
        let pod = h.run_pod("web").await;
        let id = h.create(&pod, "app").await;
        remove_container(&h.cri, request(&id)).await.unwrap();
        assert!(!h.called("stop_container"));
    }

    #[tokio::test]
    async fn an_unknown_container_is_removed_fine() {
        let h = Harness::new().await;
        remove_container(&h.cri, request("no-such-container"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_backend_failure_keeps_the_record_for_a_retry() {
        let h = Harness::new().await;
        let pod = h.run_pod("web").await;
        let id = h.create(&pod, "app").await;
        h.mock.fail("remove_container", || {
            runtimes::Error::backend("mock", "busy")
        });
        let err = remove_container(&h.cri, request(&id)).await.unwrap_err();
        assert!(err.to_string().contains("busy"));
        assert!(h.store().get::<ContainerRecord>(&id).unwrap().is_some());
    }
}
