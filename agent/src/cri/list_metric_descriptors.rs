//! `ListMetricDescriptors`.

use berth_proto::cri::v1 as cri;

use super::shared::metrics::descriptors;
use super::Cri;

/// The metric families `ListPodSandboxMetrics` answers with: kubelet builds its
/// `/metrics/cadvisor` families from these.
pub(super) async fn list_metric_descriptors(
    _: &Cri,
    _: cri::ListMetricDescriptorsRequest,
) -> runtimes::Result<cri::ListMetricDescriptorsResponse> {
    Ok(cri::ListMetricDescriptorsResponse {
        descriptors: descriptors(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::testing::Harness;

    #[tokio::test]
    async fn describes_kubelets_cadvisor_families() {
        let h = Harness::new().await;
        let answer = list_metric_descriptors(&h.cri, cri::ListMetricDescriptorsRequest {})
            .await
            .unwrap();
        let names: Vec<_> = answer.descriptors.iter().map(|d| d.name.as_str()).collect();
        for name in [
            "container_cpu_usage_seconds_total",
            "container_memory_working_set_bytes",
            "container_network_receive_bytes_total",
            "container_spec_memory_limit_bytes",
            "container_start_time_seconds",
        ] {
            assert!(names.contains(&name), "{name}");
        }
        assert!(answer
            .descriptors
            .iter()
            .all(|d| !d.help.is_empty() && !d.label_keys.is_empty()));
    }
}
