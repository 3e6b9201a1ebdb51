//! `ContainerStats`.

use berth_proto::cri::v1 as cri;
use runtimes::Runtime;

use super::shared::objects::resolve;
use super::shared::stats;
use super::Cri;
use crate::store::ContainerRecord;

const METHOD: &str = "ContainerStats";

/// The container's CPU, memory and writable-layer usage.
pub(super) async fn container_stats(
    cri: &Cri,
    request: cri::ContainerStatsRequest,
) -> runtimes::Result<cri::ContainerStatsResponse> {
    let record: ContainerRecord = resolve(&cri.store, METHOD, &request.container_id)?;
    Ok(cri::ContainerStatsResponse {
        stats: Some(read(cri, &record).await?),
    })
}

/// The stats of `record` from its backend.
pub(super) async fn read(
    cri: &Cri,
    record: &ContainerRecord,
) -> runtimes::Result<cri::ContainerStats> {
    let usage = cri.runtime.container_stats(&record.container_id).await?;
    Ok(stats::container_stats(&cri.cpu, record, &usage))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::testing::Harness;

    #[tokio::test]
    async fn reports_usage_with_the_container_attributes() {
        let h = Harness::new().await;
        let (_, id) = h.running_app().await;
        let request = cri::ContainerStatsRequest {
            container_id: id.clone(),
        };
        let first = container_stats(&h.cri, request.clone())
            .await
            .unwrap()
            .stats
            .unwrap();
        let attributes = first.attributes.unwrap();
        assert_eq!(attributes.id, id);
        assert_eq!(attributes.metadata.unwrap().name, "app");
        assert_eq!(attributes.labels["tier"], "app");
        let cpu = first.cpu.unwrap();
        assert!(cpu.timestamp > 0);
        assert_eq!(cpu.usage_core_nano_seconds.unwrap().value, 1_000_000_000);
        assert!(cpu.usage_nano_cores.is_none());
        let memory = first.memory.unwrap();
        assert!(memory.timestamp > 0);
        assert_eq!(memory.working_set_bytes.unwrap().value, 1 << 20);
        let layer = first.writable_layer.unwrap();
        assert_eq!(layer.used_bytes.unwrap().value, 4096);
        assert!(layer.fs_id.unwrap().mountpoint.ends_with("/upper"));
        // The second reading has a rate (the mock's counter does not move: 0).
        let second = container_stats(&h.cri, request)
            .await
            .unwrap()
            .stats
            .unwrap();
        assert_eq!(
            second.cpu.unwrap().usage_nano_cores.map(|v| v.value),
            Some(0)
        );
        let unknown = cri::ContainerStatsRequest {
            container_id: "no-such-container".into(),
        };
        assert!(container_stats(&h.cri, unknown)
            .await
            .unwrap_err()
            .is_not_found());
    }
}
