//! `ListContainerStats`.

use berth_proto::cri::v1 as cri;
use futures::future::join_all;

use super::container_stats::read;
use super::shared::objects::{id_matches, labels_match, successes, visible};
use super::Cri;
use crate::store::ContainerRecord;

/// The stats of the containers the filter keeps (id and pod id by prefix, labels).
/// A container without stats (not running, or its backend failed) is left out rather
/// than failing the whole list.
pub(super) async fn list_container_stats(
    cri: &Cri,
    request: cri::ListContainerStatsRequest,
) -> runtimes::Result<cri::ListContainerStatsResponse> {
    let filter = request.filter.unwrap_or_default();
    let records: Vec<ContainerRecord> = visible::<ContainerRecord>(&cri.store)?
        .into_iter()
        .filter(|r| id_matches(&filter.id, &r.id))
        .filter(|r| id_matches(&filter.pod_sandbox_id, &r.sandbox_id))
        .filter(|r| labels_match(&filter.label_selector, &r.config.labels, &r.container_id))
        .collect();
    Ok(cri::ListContainerStatsResponse {
        stats: container_stats_of(cri, &records).await,
    })
}

/// The stats of each of `records` that has some.
pub(super) async fn container_stats_of(
    cri: &Cri,
    records: &[ContainerRecord],
) -> Vec<cri::ContainerStats> {
    let read = join_all(records.iter().map(|r| read(cri, r))).await;
    successes("stats", records, read)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::cri::testing::{sorted, Harness};

    async fn ids(h: &Harness, filter: Option<cri::ContainerStatsFilter>) -> Vec<String> {
        let request = cri::ListContainerStatsRequest { filter };
        sorted(
            list_container_stats(&h.cri, request)
                .await
                .unwrap()
                .stats
                .into_iter()
                .map(|s| s.attributes.unwrap().id),
        )
    }

    #[tokio::test]
    async fn lists_running_containers_by_filter() {
        let h = Harness::new().await;
        let web = h.run_pod("web").await;
        let db = h.run_pod("db").await;
        let mut all = vec![
            h.start(&web, "a").await,
            h.start(&web, "b").await,
            h.start(&db, "a").await,
        ];
        all.sort();
        h.create(&web, "not-started").await;
        assert_eq!(ids(&h, None).await, all);
        let by_id = cri::ContainerStatsFilter {
            id: all[0].clone(),
            ..Default::default()
        };
        assert_eq!(ids(&h, Some(by_id)).await, [all[0].clone()]);
        let by_pod = cri::ContainerStatsFilter {
            pod_sandbox_id: db[..10].to_string(),
            ..Default::default()
        };
        assert_eq!(ids(&h, Some(by_pod)).await.len(), 1);
        let by_label = |v: &str| cri::ContainerStatsFilter {
            label_selector: HashMap::from([("tier".to_string(), v.to_string())]),
            ..Default::default()
        };
        assert_eq!(ids(&h, Some(by_label("b"))).await.len(), 1);
        assert!(ids(&h, Some(by_label("z"))).await.is_empty());
    }
}
