//! `PortForward`: checks the request and answers the streaming server's URL for it.

use berth_proto::cri::v1::{PortForwardRequest, PortForwardResponse};

use super::shared::objects::{in_method, resolve};
use super::Cri;
use crate::store::{SandboxPhase, SandboxRecord};
use crate::streaming::validate_ports;

const METHOD: &str = "PortForward";

/// The URL for forwarding ports into a ready pod sandbox: unknown → `NotFound`, not
/// ready → `FailedPrecondition`, a port outside 1–65535 → `InvalidArgument`. The ports
/// are optional (SPDY clients name one per stream).
pub(super) async fn port_forward(
    cri: &Cri,
    request: PortForwardRequest,
) -> runtimes::Result<PortForwardResponse> {
    let record: SandboxRecord = resolve(&cri.store, METHOD, &request.pod_sandbox_id)?;
    if record.phase != SandboxPhase::Ready {
        return Err(runtimes::Error::FailedPrecondition(format!(
            "{METHOD}: pod sandbox {} ({}) is not ready",
            record.id, record.container_id
        )));
    }
    let ports = validate_ports(&request.port).map_err(|e| in_method(METHOD, e))?;
    let url = cri
        .streaming(METHOD)?
        .get_port_forward_url(&record.container_id, ports)?;
    Ok(PortForwardResponse { url })
}

#[cfg(test)]
mod tests {
    use berth_proto::cri::v1::StopPodSandboxRequest;
    use runtimes::Error;

    use super::*;
    use crate::cri::stop_pod_sandbox::stop_pod_sandbox;
    use crate::cri::testing::Harness;

    fn request(id: &str, ports: &[i32]) -> PortForwardRequest {
        PortForwardRequest {
            pod_sandbox_id: id.into(),
            port: ports.to_vec(),
        }
    }

    #[tokio::test]
    async fn answers_a_url_for_a_ready_pod_only() {
        let h = Harness::with_streaming().await;
        let pod = h.run_pod("web").await;
        let url = port_forward(&h.cri, request(&pod, &[80]))
            .await
            .unwrap()
            .url;
        assert!(
            url.starts_with(&format!("{}/portforward/", h.streaming_base())),
            "{url}"
        );
        port_forward(&h.cri, request(&pod, &[])).await.unwrap();
        let bad = port_forward(&h.cri, request(&pod, &[70000]))
            .await
            .unwrap_err();
        assert!(matches!(bad, Error::InvalidSpec(_)), "{bad:?}");
        let unknown = port_forward(&h.cri, request("no-such-container", &[80]))
            .await
            .unwrap_err();
        assert!(unknown.is_not_found(), "{unknown:?}");
        stop_pod_sandbox(
            &h.cri,
            StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            },
        )
        .await
        .unwrap();
        let stopped = port_forward(&h.cri, request(&pod, &[80]))
            .await
            .unwrap_err();
        assert!(
            matches!(stopped, Error::FailedPrecondition(_)),
            "{stopped:?}"
        );
    }
}
