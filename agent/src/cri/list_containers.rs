//! `ListContainers`.

use futures::future::join_all;
use k8s_cri::v1::{ListContainersRequest, ListContainersResponse};

use super::shared::container::{cri_state, observe, to_cri_container};
use super::shared::objects::{id_matches, labels_match, visible};
use super::Cri;
use crate::store::ContainerRecord;

/// The recorded containers with their backend state, filtered by id and pod id
/// (prefixes, as containerd), state and labels. The state filter needs the backends,
/// so it is applied last, to what the other filters kept.
pub(super) async fn list_containers(
    cri: &Cri,
    request: ListContainersRequest,
) -> runtimes::Result<ListContainersResponse> {
    let filter = request.filter.unwrap_or_default();
    let records: Vec<ContainerRecord> = visible::<ContainerRecord>(&cri.store)?
        .into_iter()
        .filter(|r| id_matches(&filter.id, &r.id))
        .filter(|r| id_matches(&filter.pod_sandbox_id, &r.sandbox_id))
        .filter(|r| labels_match(&filter.label_selector, &r.config.labels, &r.container_id))
        .collect();
    let observed = join_all(records.iter().map(|r| observe(cri, r))).await;
    let containers = records
        .iter()
        .zip(observed)
        .filter(|(_, status)| {
            filter
                .state
                .as_ref()
                .is_none_or(|s| s.state == cri_state(status.state) as i32)
        })
        .map(|(record, status)| to_cri_container(record, status.state))
        .collect();
    Ok(ListContainersResponse { containers })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use k8s_cri::v1 as cri;

    use super::*;
    use crate::cri::testing::{sorted, Harness};

    async fn list(h: &Harness, filter: cri::ContainerFilter) -> Vec<String> {
        let request = ListContainersRequest {
            filter: Some(filter),
        };
        sorted(
            list_containers(&h.cri, request)
                .await
                .unwrap()
                .containers
                .into_iter()
                .map(|c| c.metadata.unwrap().name),
        )
    }

    #[tokio::test]
    async fn filters_by_id_pod_state_and_labels() {
        let h = Harness::new().await;
        let web = h.run_pod("web").await;
        let db = h.run_pod("db").await;
        let running = h.start(&web, "front").await;
        h.create(&web, "side").await;
        h.start(&db, "pg").await;

        let all = list_containers(&h.cri, ListContainersRequest::default())
            .await
            .unwrap();
        assert_eq!(all.containers.len(), 3);
        let front = all.containers.iter().find(|c| c.id == running).unwrap();
        assert_eq!(front.pod_sandbox_id, web);
        assert_eq!(front.state(), cri::ContainerState::ContainerRunning);
        assert_eq!(front.image_ref, "docker.io/library/busybox@sha256:bbbb");
        assert_eq!(front.image_id, "sha256:aaaa");

        let f = |id: &str, pod: &str| cri::ContainerFilter {
            id: id.into(),
            pod_sandbox_id: pod.into(),
            ..Default::default()
        };
        assert_eq!(list(&h, f(&running, "")).await, ["front"]);
        assert_eq!(list(&h, f(&running[..8], "")).await, ["front"]);
        assert_eq!(list(&h, f("", &web)).await, ["front", "side"]);
        assert_eq!(list(&h, f("", &db[..5])).await, ["pg"]);
        assert!(list(&h, f(&running, &db)).await.is_empty());

        let state = |s: cri::ContainerState| cri::ContainerFilter {
            state: Some(cri::ContainerStateValue { state: s as i32 }),
            ..Default::default()
        };
        assert_eq!(
            list(&h, state(cri::ContainerState::ContainerRunning)).await,
            ["front", "pg"]
        );
        assert_eq!(
            list(&h, state(cri::ContainerState::ContainerCreated)).await,
            ["side"]
        );
        assert!(list(&h, state(cri::ContainerState::ContainerExited))
            .await
            .is_empty());

        let labels = cri::ContainerFilter {
            label_selector: HashMap::from([("tier".to_string(), "side".to_string())]),
            ..Default::default()
        };
        assert_eq!(list(&h, labels).await, ["side"]);
    }

    #[tokio::test]
    async fn a_backend_that_fails_for_one_container_does_not_fail_the_list() {
        let h = Harness::new().await;
        let web = h.run_pod("web").await;
        h.start(&web, "front").await;
        h.mock.fail("container_status", || {
            runtimes::Error::backend("mock", "boom")
        });
        let all = list_containers(&h.cri, ListContainersRequest::default())
            .await
            .unwrap();
        assert_eq!(
            all.containers[0].state(),
            cri::ContainerState::ContainerUnknown
        );
    }
}
