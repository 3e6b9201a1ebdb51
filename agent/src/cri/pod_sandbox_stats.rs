//! `PodSandboxStats`.

use berth_proto::cri::v1 as cri;
use runtimes::Runtime;

use super::list_container_stats::container_stats_of;
use super::shared::objects::{containers_of, resolve};
use super::shared::stats;
use super::Cri;
use crate::store::SandboxRecord;

const METHOD: &str = "PodSandboxStats";

/// The whole pod's usage, its network's counters and its containers' stats.
pub(super) async fn pod_sandbox_stats(
    cri: &Cri,
    request: cri::PodSandboxStatsRequest,
) -> runtimes::Result<cri::PodSandboxStatsResponse> {
    let record: SandboxRecord = resolve(&cri.store, METHOD, &request.pod_sandbox_id)?;
    Ok(cri::PodSandboxStatsResponse {
        stats: Some(read(cri, &record).await?),
    })
}

/// The stats of the pod `record` from its backend, with its containers' stats.
pub(super) async fn read(
    cri: &Cri,
    record: &SandboxRecord,
) -> runtimes::Result<cri::PodSandboxStats> {
    let usage = cri.runtime.pod_sandbox_stats(&record.container_id).await?;
    let containers = container_stats_of(cri, &containers_of(&cri.store, &record.id)?).await;
    Ok(stats::sandbox_stats(&cri.cpu, record, &usage, containers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::testing::Harness;

    #[tokio::test]
    async fn reports_the_pod_with_its_containers() {
        let h = Harness::new().await;
        let pod = h.run_pod("web").await;
        let a = h.start(&pod, "a").await;
        h.create(&pod, "idle").await;
        let other = h.run_pod("db").await;
        h.start(&other, "x").await;
        let request = cri::PodSandboxStatsRequest {
            pod_sandbox_id: pod.clone(),
        };
        let stats = pod_sandbox_stats(&h.cri, request)
            .await
            .unwrap()
            .stats
            .unwrap();
        let attributes = stats.attributes.unwrap();
        assert_eq!(attributes.id, pod);
        assert_eq!(attributes.metadata.unwrap().name, "web");
        let linux = stats.linux.unwrap();
        assert_eq!(
            linux.cpu.unwrap().usage_core_nano_seconds.unwrap().value,
            1_000_000_000
        );
        assert_eq!(
            linux.memory.unwrap().working_set_bytes.unwrap().value,
            9 << 20
        );
        assert_eq!(linux.process.unwrap().process_count.unwrap().value, 1);
        let network = linux.network.unwrap();
        assert_eq!(network.default_interface.unwrap().name, "eth0");
        assert_eq!(network.interfaces[0].tx_bytes.unwrap().value, 200);
        let ids: Vec<_> = linux
            .containers
            .iter()
            .map(|c| c.attributes.clone().unwrap().id)
            .collect();
        assert_eq!(ids, [a]);
        let unknown = cri::PodSandboxStatsRequest {
            pod_sandbox_id: "no-such-pod".into(),
        };
        assert!(pod_sandbox_stats(&h.cri, unknown)
            .await
            .unwrap_err()
            .is_not_found());
    }
}
