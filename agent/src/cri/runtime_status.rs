//! `Status`: whether the runtime and the pod network are ready, and which runtime
//! handlers this node serves.

use std::collections::HashMap;

use k8s_cri::v1::{
    RuntimeCondition, RuntimeFeatures, RuntimeHandler, RuntimeHandlerFeatures, RuntimeStatus,
    StatusRequest, StatusResponse,
};
use runtimes::Runtime;

/// CRI's condition type for the runtime.
const RUNTIME_READY: &str = "RuntimeReady";
/// CRI's condition type for the pod network.
const NETWORK_READY: &str = "NetworkReady";

/// The answer to `Status`. The runtime is ready when it answers `image_fs_info`; the
/// network is not, as berth does not set up pod networking yet. The default handler
/// `""` is listed first whether or not `handlers` names it.
pub(super) async fn status(
    runtime: &dyn Runtime,
    handlers: &[String],
    config_json: &str,
    request: StatusRequest,
) -> StatusResponse {
    let runtime_ready = match runtime.image_fs_info().await {
        Ok(_) => condition(RUNTIME_READY, true, "", String::new()),
        Err(err) => condition(
            RUNTIME_READY,
            false,
            "BackendNotReady",
            format!("the {} backend does not answer: {err}", runtime.name()),
        ),
    };
    let network_ready = condition(
        NETWORK_READY,
        false,
        "NetworkPluginNotReady",
        "pod networking is not implemented in this version of berth".to_string(),
    );
    let info = if request.verbose {
        HashMap::from([("config".to_string(), config_json.to_string())])
    } else {
        HashMap::new()
    };
    StatusResponse {
        status: Some(RuntimeStatus {
            conditions: vec![runtime_ready, network_ready],
        }),
        info,
        runtime_handlers: std::iter::once("")
            .chain(
                handlers
                    .iter()
                    .map(String::as_str)
                    .filter(|h| !h.is_empty()),
            )
            .map(runtime_handler)
            .collect(),
        features: Some(RuntimeFeatures {
            supplemental_groups_policy: false,
        }),
    }
}

fn condition(kind: &str, status: bool, reason: &str, message: String) -> RuntimeCondition {
    RuntimeCondition {
        r#type: kind.to_string(),
        status,
        reason: reason.to_string(),
        message,
    }
}

/// A handler with the optional features berth does not offer yet switched off.
fn runtime_handler(name: &str) -> RuntimeHandler {
    RuntimeHandler {
        name: name.to_string(),
        features: Some(RuntimeHandlerFeatures {
            recursive_read_only_mounts: false,
            user_namespaces: false,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtimes::mock::MockRuntime;

    fn conditions(answer: &StatusResponse) -> Vec<(String, bool, String)> {
        let status = answer.status.as_ref().unwrap();
        status
            .conditions
            .iter()
            .map(|c| (c.r#type.clone(), c.status, c.reason.clone()))
            .collect()
    }

    #[tokio::test]
    async fn the_runtime_is_ready_when_it_answers_and_the_network_is_not() {
        let runtime = MockRuntime::new("mock", &["linux"]);
        let answer = status(&runtime, &[], "{}", StatusRequest::default()).await;
        assert_eq!(
            conditions(&answer),
            [
                ("RuntimeReady".into(), true, "".into()),
                ("NetworkReady".into(), false, "NetworkPluginNotReady".into())
            ]
        );
        let network = &answer.status.as_ref().unwrap().conditions[1];
        assert!(network.message.contains("pod networking"));
        assert!(answer.info.is_empty());
    }

    #[tokio::test]
    async fn a_failing_runtime_is_not_ready_and_says_why() {
        let runtime = MockRuntime::new("mock", &["linux"]);
        runtime.fail("image_fs_info", || runtimes::Error::Unavailable {
            service: "containerd".into(),
            message: "socket gone".into(),
        });
        let answer = status(&runtime, &[], "{}", StatusRequest::default()).await;
        let ready = &answer.status.as_ref().unwrap().conditions[0];
        assert_eq!(ready.r#type, "RuntimeReady");
        assert!(!ready.status);
        assert_eq!(ready.reason, "BackendNotReady");
        assert!(ready.message.contains("mock backend"), "{}", ready.message);
        assert!(ready.message.contains("socket gone"), "{}", ready.message);
    }

    #[tokio::test]
    async fn lists_the_default_handler_then_the_configured_ones() {
        let runtime = MockRuntime::new("mock", &["linux"]);
        let handlers = ["".to_string(), "kata".to_string(), "windows".to_string()];
        let answer = status(&runtime, &handlers, "{}", StatusRequest::default()).await;
        let names: Vec<_> = answer
            .runtime_handlers
            .iter()
            .map(|h| h.name.as_str())
            .collect();
        assert_eq!(names, ["", "kata", "windows"]);
    }

    #[tokio::test]
    async fn verbose_shows_the_config() {
        let runtime = MockRuntime::new("mock", &["linux"]);
        let request = StatusRequest { verbose: true };
        let answer = status(&runtime, &[], r#"{"socket":"/s"}"#, request).await;
        assert_eq!(answer.info["config"], r#"{"socket":"/s"}"#);
    }
}
