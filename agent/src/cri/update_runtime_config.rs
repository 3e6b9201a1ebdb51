//! `UpdateRuntimeConfig`: kubelet sends the node's pod CIDR once the node has one.

use std::sync::Arc;

use berth_proto::cri::v1::{UpdateRuntimeConfigRequest, UpdateRuntimeConfigResponse};

use super::Cri;

/// Where the pod CIDR goes: the integrator wires the network's own
/// ([`Cri::with_pod_cidr`](super::Cri::with_pod_cidr)), which renders the CNI config
/// template with it. Blocking.
pub type PodCidrSink = Arc<dyn Fn(&str) -> runtimes::Result<()> + Send + Sync>;

/// The sink of a berth without pod networking: checks the CIDR, keeps nothing.
pub fn pod_cidr_unused() -> PodCidrSink {
    Arc::new(|cidr| runtimes::network::parse_pod_cidrs(cidr).map(drop))
}

/// Hands the pod CIDR (comma-separated when dual-stack) to the network; a malformed
/// one is `InvalidArgument` and changes nothing. The rest of the runtime config is
/// kubelet's own business.
pub(super) async fn update_runtime_config(
    cri: &Cri,
    request: UpdateRuntimeConfigRequest,
) -> runtimes::Result<UpdateRuntimeConfigResponse> {
    let cidr = request
        .runtime_config
        .and_then(|c| c.network_config)
        .map(|n| n.pod_cidr)
        .unwrap_or_default();
    let sink = cri.pod_cidr.clone();
    tokio::task::spawn_blocking(move || sink(&cidr))
        .await
        .map_err(|e| runtimes::Error::backend("berth", format!("pod CIDR update: {e}")))??;
    Ok(UpdateRuntimeConfigResponse {})
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use berth_proto::cri::v1::{NetworkConfig, RuntimeConfig};

    use super::*;
    use crate::cri::testing::Harness;

    fn request(cidr: &str) -> UpdateRuntimeConfigRequest {
        UpdateRuntimeConfigRequest {
            runtime_config: Some(RuntimeConfig {
                network_config: Some(NetworkConfig {
                    pod_cidr: cidr.into(),
                }),
            }),
        }
    }

    #[tokio::test]
    async fn the_pod_cidr_reaches_the_network_and_a_bad_one_is_refused() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        let mut h = Harness::new().await;
        h.cri = h.cri.with_pod_cidr(Arc::new(move |cidr: &str| {
            runtimes::network::parse_pod_cidrs(cidr)?;
            into.lock().unwrap().push(cidr.to_string());
            Ok(())
        }));
        update_runtime_config(&h.cri, request("10.244.1.0/24"))
            .await
            .unwrap();
        let err = update_runtime_config(&h.cri, request("10.244.1.0"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("10.244.1.0"), "{err}");
        assert_eq!(
            crate::status::from_runtime(err).code(),
            tonic::Code::InvalidArgument
        );
        update_runtime_config(&h.cri, UpdateRuntimeConfigRequest::default())
            .await
            .unwrap();
        assert_eq!(*seen.lock().unwrap(), ["10.244.1.0/24", ""]);
    }
}
