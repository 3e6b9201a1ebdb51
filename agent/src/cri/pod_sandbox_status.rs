//! `PodSandboxStatus`.

use std::collections::HashMap;

use berth_proto::cri::v1 as cri;
use runtimes::Runtime;
use serde_json::json;

use super::shared::objects::{add_inspection, now_nanos, resolve, shown_labels};
use super::shared::sandbox::{cri_state, namespace_options, settle};
use super::Cri;
use crate::store::SandboxRecord;

const METHOD: &str = "PodSandboxStatus";

/// The pod as recorded; it is ready only while its backend also says so (one that
/// stopped being ready is recorded not ready, see `settle`). `verbose`
/// adds `info["info"]`: the ContainerId, the backend it runs on, its network
/// namespace, what the backend can tell of its supervisor and cgroup (see
/// `add_inspection`) and the config it was created with.
pub(super) async fn pod_sandbox_status(
    cri: &Cri,
    request: cri::PodSandboxStatusRequest,
) -> runtimes::Result<cri::PodSandboxStatusResponse> {
    let record: SandboxRecord = resolve(&cri.store, METHOD, &request.pod_sandbox_id)?;
    let backend = cri.runtime.pod_sandbox_status(&record.container_id).await;
    let phase = settle(cri, &record, &backend);
    let ips = match &backend {
        Ok(status) if record.ips.is_empty() => status.ips.clone(),
        _ => record.ips.clone(),
    };
    let info = if request.verbose {
        let (netns, backend_error) = match &backend {
            Ok(status) => (status.netns_path.clone(), None),
            Err(err) => (None, Some(err.to_string())),
        };
        let mut info = json!({
            "containerId": record.container_id.to_string(),
            "backend": cri.runtime.backend_of(&record.container_id),
            "netns": netns,
            "backendError": backend_error,
            "runtimeHandler": record.runtime_handler,
            "config": record.config,
        });
        add_inspection(cri, &record.container_id, &mut info).await;
        HashMap::from([("info".to_string(), info.to_string())])
    } else {
        HashMap::new()
    };
    let mut ips = ips.into_iter();
    let status = cri::PodSandboxStatus {
        id: record.id.clone(),
        metadata: record.config.metadata.clone(),
        state: cri_state(phase) as i32,
        created_at: record.created_at,
        network: Some(cri::PodSandboxNetworkStatus {
            ip: ips.next().unwrap_or_default(),
            additional_ips: ips.map(|ip| cri::PodIp { ip }).collect(),
        }),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace {
                options: namespace_options(&record),
            }),
        }),
        labels: shown_labels(&record.config.labels, &record.container_id),
        annotations: record.config.annotations.clone(),
        runtime_handler: record.runtime_handler.clone(),
    };
    Ok(cri::PodSandboxStatusResponse {
        status: Some(status),
        info,
        containers_statuses: Vec::new(),
        timestamp: now_nanos(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::shared::sandbox_spec::tests::request as pod_request;
    use crate::cri::stop_pod_sandbox::stop_pod_sandbox;
    use crate::cri::testing::Harness;
    use crate::identity::CONTAINER_ID_LABEL;

    async fn status(h: &Harness, id: &str, verbose: bool) -> cri::PodSandboxStatusResponse {
        let request = cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose,
        };
        pod_sandbox_status(&h.cri, request).await.unwrap()
    }

    #[tokio::test]
    async fn reports_ips_namespaces_labels_and_the_container_id() {
        let h = Harness::new().await;
        let mut request = pod_request("web");
        let config = request.config.as_mut().unwrap();
        config.annotations.insert("a".into(), "b".into());
        config.linux = Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    pid: cri::NamespaceMode::Container as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let id = crate::cri::run_pod_sandbox::run_pod_sandbox(&h.cri, request)
            .await
            .unwrap()
            .pod_sandbox_id;
        let answer = status(&h, &id, false).await;
        let s = answer.status.unwrap();
        assert_eq!(s.id, id);
        assert_eq!(s.state(), cri::PodSandboxState::SandboxReady);
        assert_eq!(s.network.unwrap().ip, "10.88.0.1");
        let options = s.linux.unwrap().namespaces.unwrap().options.unwrap();
        assert_eq!(options.pid(), cri::NamespaceMode::Container);
        assert_eq!(s.labels["app"], "web");
        assert_eq!(
            s.labels[CONTAINER_ID_LABEL],
            "web.default-sandbox-0-on-node-a"
        );
        assert_eq!(s.annotations["a"], "b");
        assert_eq!(s.metadata.unwrap().uid, "uid-web");
        assert!(s.created_at > 0 && answer.timestamp >= s.created_at);
        assert!(answer.info.is_empty());
    }

    #[tokio::test]
    async fn verbose_info_names_the_container_id_backend_and_netns() {
        let h = Harness::new().await;
        let id = h.run_pod("web").await;
        let answer = status(&h, &id, true).await;
        let info: serde_json::Value = serde_json::from_str(&answer.info["info"]).unwrap();
        assert_eq!(info["containerId"], "web.default-sandbox-0-on-node-a");
        assert_eq!(info["backend"], "mock");
        assert_eq!(info["netns"], "/run/mock/netns/1");
        assert_eq!(info["netnsPath"], "/run/mock/netns/1");
        assert_eq!(info["cgroupPath"], "/mock/web.default-sandbox-0-on-node-a");
        // The mock has no supervisor: left out, not invented.
        assert!(info.get("supervisorPid").is_none(), "{info}");
        assert_eq!(info["config"]["metadata"]["name"], "web");
        assert!(info["backendError"].is_null());
    }

    #[tokio::test]
    async fn a_stopped_or_lost_pod_is_not_ready() {
        let h = Harness::new().await;
        let stopped = h.run_pod("a").await;
        stop_pod_sandbox(
            &h.cri,
            cri::StopPodSandboxRequest {
                pod_sandbox_id: stopped.clone(),
            },
        )
        .await
        .unwrap();
        let s = status(&h, &stopped, false).await.status.unwrap();
        assert_eq!(s.state(), cri::PodSandboxState::SandboxNotready);
        // The IP stays known after the stop.
        assert_eq!(s.network.unwrap().ip, "10.88.0.1");

        let lost = h.run_pod("b").await;
        let cid = h.sandbox_id_of(&lost);
        h.mock.lose_sandbox(&cid);
        let answer = status(&h, &lost, true).await;
        assert_eq!(
            answer.status.unwrap().state(),
            cri::PodSandboxState::SandboxNotready
        );
        let info: serde_json::Value = serde_json::from_str(&answer.info["info"]).unwrap();
        assert!(info["backendError"].as_str().unwrap().contains("not found"));
    }

    #[tokio::test]
    async fn an_unknown_pod_is_not_found() {
        let h = Harness::new().await;
        let request = cri::PodSandboxStatusRequest {
            pod_sandbox_id: "no-such-pod".into(),
            verbose: false,
        };
        assert!(pod_sandbox_status(&h.cri, request)
            .await
            .unwrap_err()
            .is_not_found());
    }
}
