//! `ListPodSandboxStats`.

use berth_proto::cri::v1 as cri;
use futures::future::join_all;

use super::pod_sandbox_stats::read;
use super::shared::objects::{id_matches, labels_match, successes, visible};
use super::Cri;
use crate::store::SandboxRecord;

/// The stats of the pods the filter keeps (id by prefix, labels). A pod without
/// stats (stopped, or its backend failed) is left out rather than failing the list.
pub(super) async fn list_pod_sandbox_stats(
    cri: &Cri,
    request: cri::ListPodSandboxStatsRequest,
) -> runtimes::Result<cri::ListPodSandboxStatsResponse> {
    let filter = request.filter.unwrap_or_default();
    let records: Vec<SandboxRecord> = visible::<SandboxRecord>(&cri.store)?
        .into_iter()
        .filter(|r| id_matches(&filter.id, &r.id))
        .filter(|r| labels_match(&filter.label_selector, &r.config.labels, &r.container_id))
        .collect();
    let read = join_all(records.iter().map(|r| read(cri, r))).await;
    let stats = successes("stats", &records, read);
    Ok(cri::ListPodSandboxStatsResponse { stats })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::cri::testing::{sorted, Harness};

    async fn names(h: &Harness, filter: Option<cri::PodSandboxStatsFilter>) -> Vec<String> {
        let request = cri::ListPodSandboxStatsRequest { filter };
        sorted(
            list_pod_sandbox_stats(&h.cri, request)
                .await
                .unwrap()
                .stats
                .into_iter()
                .map(|s| s.attributes.unwrap().metadata.unwrap().name),
        )
    }

    #[tokio::test]
    async fn lists_pods_by_filter_and_skips_those_without_stats() {
        let h = Harness::new().await;
        let web = h.run_pod("web").await;
        h.run_pod("db").await;
        let lost = h.run_pod("gone").await;
        let cid = h.sandbox_id_of(&lost);
        h.mock.lose_sandbox(&cid);
        assert_eq!(names(&h, None).await, ["db", "web"]);
        let by_id = cri::PodSandboxStatsFilter {
            id: web[..7].to_string(),
            ..Default::default()
        };
        assert_eq!(names(&h, Some(by_id)).await, ["web"]);
        let by_label = cri::PodSandboxStatsFilter {
            label_selector: HashMap::from([("app".to_string(), "db".to_string())]),
            ..Default::default()
        };
        assert_eq!(names(&h, Some(by_label)).await, ["db"]);
    }
}
