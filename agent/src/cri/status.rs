//! `Status`: whether the runtime and the pod network are ready, and which runtime
//! handlers this node serves.

use std::collections::HashMap;
use std::sync::Arc;

use berth_proto::cri::v1::{
    RuntimeCondition, RuntimeFeatures, RuntimeHandler, RuntimeHandlerFeatures, RuntimeStatus,
    StatusRequest, StatusResponse,
};
use runtimes::types::Features;
use runtimes::Runtime;

/// CRI's condition type for the runtime.
const RUNTIME_READY: &str = "RuntimeReady";
/// CRI's condition type for the pod network.
const NETWORK_READY: &str = "NetworkReady";
/// berth's condition type (`/<handler>`) for a runtime handler besides the default.
const HANDLER_READY: &str = "RuntimeHandlerReady";

/// The hook that says whether pod networking is ready: `Ok` when it is, else why
/// not. The integrator wires the network's own check here
/// ([`Cri::with_network_readiness`](super::Cri::with_network_readiness)).
pub type NetworkReadiness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The readiness of a berth whose network is not wired in: never ready.
pub fn network_not_wired() -> NetworkReadiness {
    Arc::new(|| Err("pod networking is not set up in this build of berth".to_string()))
}

/// The answer to `Status`. The runtime is ready when it answers `image_fs_info`; the
/// network when `network` says so. `handlers` are the runtime handlers served, each
/// with its backend's features; the default handler `""` is listed first whether or
/// not `handlers` names it (without features then). The node-wide features are
/// `runtime`'s.
pub(super) async fn status(
    runtime: &dyn Runtime,
    network: &NetworkReadiness,
    handlers: &[(String, Features)],
    handler_readiness: &[(String, Result<(), String>)],
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
    let network_ready = match network() {
        Ok(()) => condition(NETWORK_READY, true, "", String::new()),
        Err(why) => condition(NETWORK_READY, false, "NetworkPluginNotReady", why),
    };
    let info = if request.verbose {
        HashMap::from([("config".to_string(), config_json.to_string())])
    } else {
        HashMap::new()
    };
    StatusResponse {
        status: Some(RuntimeStatus {
            conditions: [runtime_ready, network_ready]
                .into_iter()
                .chain(handler_readiness.iter().map(handler_condition))
                .collect(),
        }),
        info,
        runtime_handlers: default_first(handlers)
            .map(|(name, features)| runtime_handler(name, features))
            .collect(),
        features: Some(RuntimeFeatures {
            supplemental_groups_policy: runtime.features().supplemental_groups_policy,
            // Neither a user namespace with the host's network nor CRI mount
            // options are honoured yet: kubelet keeps such pods off this node.
            user_namespaces_host_network: false,
            mount_options: false,
        }),
    }
}

/// `handlers` with the default handler `""` first (added when missing).
fn default_first(handlers: &[(String, Features)]) -> impl Iterator<Item = (&str, Features)> + '_ {
    let default = handlers
        .iter()
        .find(|(name, _)| name.is_empty())
        .map_or(Features::default(), |(_, f)| *f);
    std::iter::once(("", default)).chain(
        handlers
            .iter()
            .filter(|(name, _)| !name.is_empty())
            .map(|(name, f)| (name.as_str(), *f)),
    )
}

/// The readiness of a runtime handler besides the default, as an extra condition
/// (`RuntimeHandlerReady/<name>`): kubelet requires only the first two and logs the
/// others; crictl shows them all.
fn handler_condition((name, ready): &(String, Result<(), String>)) -> RuntimeCondition {
    let kind = format!("{HANDLER_READY}/{name}");
    match ready {
        Ok(()) => condition(&kind, true, "", String::new()),
        Err(why) => condition(
            &kind,
            false,
            "BackendNotReady",
            format!("runtime handler `{name}`: {why}"),
        ),
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

/// A handler and the per-handler features its backend offers.
fn runtime_handler(name: &str, features: Features) -> RuntimeHandler {
    RuntimeHandler {
        name: name.to_string(),
        features: Some(RuntimeHandlerFeatures {
            recursive_read_only_mounts: features.recursive_read_only_mounts,
            user_namespaces: features.user_namespaces,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtimes::mock::MockRuntime;

    /// `Status` with no network wired, no handlers and an empty config.
    async fn unwired(runtime: &MockRuntime) -> StatusResponse {
        with_handlers(runtime, &[]).await
    }

    /// `Status` with no network wired, serving `handlers`.
    async fn with_handlers(
        runtime: &MockRuntime,
        handlers: &[(String, Features)],
    ) -> StatusResponse {
        status(
            runtime,
            &network_not_wired(),
            handlers,
            &[],
            "{}",
            StatusRequest::default(),
        )
        .await
    }

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
        let answer = unwired(&runtime).await;
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
    async fn the_network_is_ready_when_its_hook_says_so() {
        let runtime = MockRuntime::new("mock", &["linux"]);
        let ready: NetworkReadiness = Arc::new(|| Ok(()));
        let answer = status(&runtime, &ready, &[], &[], "{}", StatusRequest::default()).await;
        assert_eq!(
            conditions(&answer)[1],
            ("NetworkReady".into(), true, "".into())
        );
        let missing: NetworkReadiness = Arc::new(|| Err("no conflist in /etc/cni/net.d".into()));
        let answer = status(&runtime, &missing, &[], &[], "{}", StatusRequest::default()).await;
        let network = &answer.status.as_ref().unwrap().conditions[1];
        assert!(!network.status);
        assert_eq!(network.message, "no conflist in /etc/cni/net.d");
    }

    #[tokio::test]
    async fn a_failing_runtime_is_not_ready_and_says_why() {
        let runtime = MockRuntime::new("mock", &["linux"]);
        runtime.fail("image_fs_info", || runtimes::Error::Unavailable {
            service: "containerd".into(),
            message: "socket gone".into(),
        });
        let answer = unwired(&runtime).await;
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
        let handlers = ["", "kata", "windows"].map(|h| (h.to_string(), Features::default()));
        let answer = with_handlers(&runtime, &handlers).await;
        let names: Vec<_> = answer
            .runtime_handlers
            .iter()
            .map(|h| h.name.as_str())
            .collect();
        assert_eq!(names, ["", "kata", "windows"]);
    }

    #[tokio::test]
    async fn features_are_reported_per_handler_and_node_wide() {
        let rro_only = Features {
            recursive_read_only_mounts: true,
            ..Features::default()
        };
        let handlers = [
            ("kata".to_string(), rro_only),
            ("".to_string(), Features::all()),
        ];
        let full = MockRuntime::new("m", &["linux"]).with_features(Features::all());
        let answer = with_handlers(&full, &handlers).await;
        let reported: Vec<_> = answer
            .runtime_handlers
            .iter()
            .map(|h| {
                let f = h.features.as_ref().unwrap();
                (
                    h.name.as_str(),
                    f.recursive_read_only_mounts,
                    f.user_namespaces,
                )
            })
            .collect();
        assert_eq!(reported, [("", true, true), ("kata", true, false)]);
        assert!(answer.features.unwrap().supplemental_groups_policy);
        let answer = with_handlers(&MockRuntime::new("m", &["linux"]), &handlers).await;
        assert!(!answer.features.unwrap().supplemental_groups_policy);
    }

    #[tokio::test]
    async fn a_missing_default_handler_is_listed_without_features() {
        let runtime = MockRuntime::new("mock", &["linux"]);
        let handlers = [("kata".to_string(), Features::all())];
        let answer = with_handlers(&runtime, &handlers).await;
        let default = &answer.runtime_handlers[0];
        assert_eq!(default.name, "");
        assert!(!default.features.as_ref().unwrap().user_namespaces);
        assert!(
            answer.runtime_handlers[1]
                .features
                .as_ref()
                .unwrap()
                .user_namespaces
        );
    }

    #[tokio::test]
    async fn an_unreachable_handler_is_an_extra_condition_that_says_why() {
        let runtime = MockRuntime::new("mock", &["linux"]);
        let readiness = [
            (
                "containerd".to_string(),
                Err("containerd at /x.sock is unreachable".to_string()),
            ),
            ("fast".to_string(), Ok(())),
        ];
        let answer = status(
            &runtime,
            &network_not_wired(),
            &[],
            &readiness,
            "{}",
            StatusRequest::default(),
        )
        .await;
        let conditions = answer.status.unwrap().conditions;
        assert_eq!(conditions.len(), 4);
        assert_eq!(conditions[0].r#type, RUNTIME_READY);
        assert!(conditions[0].status, "the default handler stays ready");
        let containerd = &conditions[2];
        assert_eq!(containerd.r#type, "RuntimeHandlerReady/containerd");
        assert!(!containerd.status);
        assert_eq!(containerd.reason, "BackendNotReady");
        assert!(
            containerd.message.contains("/x.sock"),
            "{}",
            containerd.message
        );
        assert!(conditions[3].status);
    }

    #[tokio::test]
    async fn verbose_shows_the_config() {
        let runtime = MockRuntime::new("mock", &["linux"]);
        let request = StatusRequest { verbose: true };
        let answer = status(
            &runtime,
            &network_not_wired(),
            &[],
            &[],
            r#"{"socket":"/s"}"#,
            request,
        )
        .await;
        assert_eq!(answer.info["config"], r#"{"socket":"/s"}"#);
    }
}
