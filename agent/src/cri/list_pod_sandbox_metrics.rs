//! `ListPodSandboxMetrics`.

use berth_proto::cri::v1 as cri;
use futures::future::join_all;
use runtimes::Runtime;

use super::shared::metrics::{container_metrics, sandbox_metrics};
use super::shared::objects::{containers_of, successes, visible};
use super::Cri;
use crate::store::SandboxRecord;

/// The metrics of every pod with stats, and of its containers with stats. A pod or
/// container without (stopped, gone meanwhile, or its backend failed) is left out
/// rather than failing the list.
pub(super) async fn list_pod_sandbox_metrics(
    cri: &Cri,
    _: cri::ListPodSandboxMetricsRequest,
) -> runtimes::Result<cri::ListPodSandboxMetricsResponse> {
    let sandboxes = visible::<SandboxRecord>(&cri.store)?;
    let read = join_all(sandboxes.iter().map(|s| read(cri, s))).await;
    Ok(cri::ListPodSandboxMetricsResponse {
        pod_metrics: successes("metrics", &sandboxes, read),
    })
}

/// The metrics of the pod `sandbox` and of those of its containers that have stats.
async fn read(cri: &Cri, sandbox: &SandboxRecord) -> runtimes::Result<cri::PodSandboxMetrics> {
    let usage = cri
        .runtime
        .pod_sandbox_metrics(&sandbox.container_id)
        .await?;
    let containers = containers_of(&cri.store, &sandbox.id)?;
    let read = join_all(
        containers
            .iter()
            .map(|c| cri.runtime.container_metrics(&c.container_id)),
    )
    .await;
    let containers: Vec<cri::ContainerMetrics> = containers
        .iter()
        .zip(read)
        .filter_map(|(c, stats)| Some(container_metrics(sandbox, c, &stats.ok()?)))
        .collect();
    Ok(sandbox_metrics(sandbox, &usage, containers))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::cri::shared::metrics::descriptors;
    use crate::cri::testing::Harness;

    #[tokio::test]
    async fn lists_pods_with_stats_and_labels_matching_their_descriptors() {
        let h = Harness::new().await;
        let web = h.run_pod("web").await;
        let a = h.start(&web, "a").await;
        h.create(&web, "idle").await;
        let db = h.run_pod("db").await;
        let lost = h.run_pod("gone").await;
        let cid = h.sandbox_id_of(&lost);
        h.mock.lose_sandbox(&cid);
        let answer = list_pod_sandbox_metrics(&h.cri, cri::ListPodSandboxMetricsRequest {})
            .await
            .unwrap();
        let mut pods: Vec<_> = answer
            .pod_metrics
            .iter()
            .map(|p| p.pod_sandbox_id.clone())
            .collect();
        pods.sort();
        let mut expected = vec![web.clone(), db];
        expected.sort();
        assert_eq!(pods, expected);

        let keys: HashMap<String, usize> = descriptors()
            .into_iter()
            .map(|d| (d.name, d.label_keys.len()))
            .collect();
        let pod = answer
            .pod_metrics
            .iter()
            .find(|p| p.pod_sandbox_id == web)
            .unwrap();
        let containers: Vec<_> = pod
            .container_metrics
            .iter()
            .map(|c| c.container_id.clone())
            .collect();
        assert_eq!(containers, [a]);
        let all: Vec<&cri::Metric> = pod
            .metrics
            .iter()
            .chain(pod.container_metrics.iter().flat_map(|c| &c.metrics))
            .collect();
        for m in &all {
            assert_eq!(m.label_values.len(), keys[&m.name], "{}", m.name);
            assert!(m.value.is_some(), "{}", m.name);
        }
        let value = |name: &str| {
            all.iter()
                .find(|m| m.name == name)
                .unwrap_or_else(|| panic!("no {name}"))
                .value
                .unwrap()
                .value
        };
        assert_eq!(value("container_cpu_usage_seconds_total"), 1);
        assert_eq!(value("container_memory_working_set_bytes"), 9 << 20);
        assert_eq!(value("container_network_transmit_bytes_total"), 200);
        assert_eq!(value("container_processes"), 1);
        assert!(value("container_start_time_seconds") > 0);
        let names: Vec<&str> = all.iter().map(|m| m.name.as_str()).collect();
        assert!(names.contains(&"container_fs_usage_bytes"));
    }
}
