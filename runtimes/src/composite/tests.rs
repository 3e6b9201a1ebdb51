//! Dispatch and fan-out rules, driven with mock backends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::mock::MockRuntime;
use crate::types::ImageConfig;

const NODE: &str = "node-a";

fn pod(service: &str) -> ContainerId {
    ContainerId::new(service, crate::id::SANDBOX_ROLE, 0, NODE).unwrap()
}

fn ctr(sandbox: &ContainerId, name: &str) -> ContainerId {
    sandbox.with_role(name).unwrap()
}

fn image(tag: &str, id: &str, os: &str) -> ImageInfo {
    ImageInfo {
        id: id.to_string(),
        repo_tags: vec![tag.to_string()],
        config: ImageConfig {
            os: os.to_string(),
            architecture: "amd64".into(),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn linux_image() -> ImageInfo {
    image("docker.io/library/busybox:latest", "sha256:linux", "linux")
}

fn windows_image() -> ImageInfo {
    image(
        "mcr.microsoft.com/windows/nanoserver:ltsc2022",
        "sha256:windows",
        "windows",
    )
}

/// A Windows node: primary runs Windows workloads, the delegate runs Linux ones.
struct Node {
    primary: MockRuntime,
    delegate: MockRuntime,
}

impl Node {
    fn new() -> Self {
        let primary = MockRuntime::new("hcs", &["windows"])
            .with_registry_image(linux_image())
            .with_registry_image(windows_image());
        let delegate = MockRuntime::new("wsl", &["linux"])
            .sharing_calls(&primary)
            .with_registry_image(linux_image())
            .with_registry_image(windows_image());
        Self { primary, delegate }
    }

    fn composite(&self, with_delegate: bool) -> CompositeRuntime {
        let rt = CompositeRuntime::new(Arc::new(self.primary.clone()));
        if with_delegate {
            rt.with_delegate(Arc::new(self.delegate.clone()))
        } else {
            rt
        }
    }

    /// Backend names that received `operation` for `target`.
    fn who(&self, operation: &str, target: &ContainerId) -> Vec<String> {
        self.primary
            .calls()
            .into_iter()
            .filter(|c| c.operation == operation && c.target == target.to_string())
            .map(|c| c.backend)
            .collect()
    }
}

fn spec() -> SandboxSpec {
    SandboxSpec::default()
}

fn route_to_peer(e: Error) -> (String, String, String) {
    match e {
        Error::RouteToPeer {
            service,
            required_os,
            reason,
            ..
        } => (service, required_os, reason),
        other => panic!("expected RouteToPeer, got {other:?}"),
    }
}

#[tokio::test]
async fn pod_without_hints_goes_to_primary() {
    let node = Node::new();
    let rt = node.composite(true);
    let p = pod("web.default");
    rt.run_pod_sandbox(&p, &spec()).await.unwrap();
    assert_eq!(node.who("run_pod_sandbox", &p), ["hcs"]);
    assert_eq!(rt.backend_of(&p).as_deref(), Some("hcs"));
}

#[tokio::test]
async fn linux_pod_goes_to_delegate_and_its_containers_follow() {
    let node = Node::new();
    let rt = node.composite(true);
    let p = pod("web.default");
    let c = ctr(&p, "nginx");
    rt.run_pod_sandbox(
        &p,
        &SandboxSpec {
            os: Some("linux".into()),
            ..spec()
        },
    )
    .await
    .unwrap();
    rt.create_container(
        &p,
        &c,
        &ContainerSpec {
            image: "busybox".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    rt.start_container(&c).await.unwrap();
    rt.stop_container(&c, Duration::from_secs(1)).await.unwrap();
    rt.remove_container(&c).await.unwrap();
    for op in [
        "create_container",
        "start_container",
        "stop_container",
        "remove_container",
    ] {
        assert_eq!(node.who(op, &c), ["wsl"], "{op}");
    }
    assert!(node.delegate.holds_sandbox(&p));
    assert!(!node.primary.holds_sandbox(&p));
}

#[tokio::test]
async fn linux_workload_without_delegate_routes_to_peer() {
    let node = Node::new();
    let rt = node.composite(false);
    let p = pod("web.default");
    let err = rt
        .run_pod_sandbox(
            &p,
            &SandboxSpec {
                os: Some("linux".into()),
                ..spec()
            },
        )
        .await
        .unwrap_err();
    let (service, os, reason) = route_to_peer(err);
    assert_eq!((service.as_str(), os.as_str()), ("web.default", "linux"));
    assert!(
        reason.contains("no backend of this node runs linux"),
        "{reason}"
    );
    assert!(rt.backend_of(&p).is_none(), "a refused pod leaves no route");
    assert!(
        node.who("run_pod_sandbox", &p).is_empty(),
        "no backend was asked"
    );
}

#[tokio::test]
async fn image_os_cached_at_pull_decides_dispatch() {
    let node = Node::new();
    let rt = node.composite(true);
    rt.pull_image(&PullRequest {
        reference: "docker.io/library/busybox:latest".into(),
        auth: None,
    })
    .await
    .unwrap();
    let p = pod("job.batch");
    let with_image = SandboxSpec {
        image: Some("docker.io/library/busybox:latest".into()),
        ..spec()
    };
    rt.run_pod_sandbox(&p, &with_image).await.unwrap();
    assert_eq!(rt.backend_of(&p).as_deref(), Some("wsl"));
    // The image's OS outranks what the pod config claims.
    let q = pod("job2.batch");
    rt.run_pod_sandbox(
        &q,
        &SandboxSpec {
            os: Some("windows".into()),
            ..with_image
        },
    )
    .await
    .unwrap();
    assert_eq!(rt.backend_of(&q).as_deref(), Some("wsl"));
}

#[tokio::test]
async fn image_os_is_found_in_backend_stores_after_a_restart() {
    let node = Node::new();
    node.composite(true)
        .pull_image(&PullRequest {
            reference: "sha256:linux".into(),
            auth: None,
        })
        .await
        .unwrap();
    let restarted = node.composite(true);
    let p = pod("web.default");
    restarted
        .run_pod_sandbox(
            &p,
            &SandboxSpec {
                image: Some("sha256:linux".into()),
                ..spec()
            },
        )
        .await
        .unwrap();
    assert_eq!(restarted.backend_of(&p).as_deref(), Some("wsl"));
}

#[tokio::test]
async fn the_primary_may_serve_a_named_handler_too() {
    let node = Node::new();
    let rt = node
        .composite(false)
        .with_handler("hcs", Arc::new(node.primary.clone()));
    assert_eq!(rt.runtime_handlers(), ["", "hcs"]);
    let p = pod("web.default");
    let s = SandboxSpec {
        runtime_handler: "hcs".into(),
        ..spec()
    };
    rt.run_pod_sandbox(&p, &s).await.unwrap();
    assert_eq!(rt.backend_of(&p).as_deref(), Some("hcs"));
    // Its readiness is the runtime's (RuntimeReady), not a handler condition.
    assert!(rt.handler_readiness().await.is_empty());
    // Listed once, though it serves two handlers.
    assert_eq!(rt.backends().len(), 1);
}

#[tokio::test]
async fn runtime_handler_beats_annotation_and_os() {
    let node = Node::new();
    let rt = node
        .composite(true)
        .with_handler("wsl2", Arc::new(node.delegate.clone()));
    let p = pod("web.default");
    let mut annotations = BTreeMap::new();
    annotations.insert(ISOLATION_ANNOTATION.to_string(), "hcs".to_string());
    let s = SandboxSpec {
        runtime_handler: "wsl2".into(),
        annotations,
        ..spec()
    };
    rt.run_pod_sandbox(&p, &s).await.unwrap();
    assert_eq!(rt.backend_of(&p).as_deref(), Some("wsl"));
}

#[tokio::test]
async fn annotation_beats_os_and_names_backends_or_handlers() {
    let node = Node::new();
    let rt = node
        .composite(true)
        .with_handler("fast", Arc::new(node.delegate.clone()));
    for (value, expected) in [("wsl", "wsl"), ("fast", "wsl"), ("hcs", "hcs")] {
        let p = pod(&format!("svc-{value}.default"));
        let mut annotations = BTreeMap::new();
        annotations.insert(ISOLATION_ANNOTATION.to_string(), value.to_string());
        rt.run_pod_sandbox(
            &p,
            &SandboxSpec {
                annotations,
                ..spec()
            },
        )
        .await
        .unwrap();
        assert_eq!(rt.backend_of(&p).as_deref(), Some(expected), "{value}");
    }
}

#[tokio::test]
async fn unknown_handler_or_isolation_routes_to_peer() {
    let node = Node::new();
    let rt = node.composite(true);
    let p = pod("web.default");
    let err = rt
        .run_pod_sandbox(
            &p,
            &SandboxSpec {
                runtime_handler: "kata".into(),
                ..spec()
            },
        )
        .await
        .unwrap_err();
    // What kubelet shows (the message) names the handler in a form scripts can match.
    let message = err.to_string();
    assert!(
        message.contains(
            "[ROUTE_TO_PEER runtime_handler=kata]: runtime handler `kata` is not served here"
        ),
        "{message}"
    );
    let (_, os, reason) = route_to_peer(err);
    assert_eq!(os, "*");
    assert!(reason.contains("`kata`"), "{reason}");

    let mut annotations = BTreeMap::new();
    annotations.insert(ISOLATION_ANNOTATION.to_string(), "gvisor".to_string());
    let err = rt
        .run_pod_sandbox(
            &p,
            &SandboxSpec {
                annotations,
                ..spec()
            },
        )
        .await
        .unwrap_err();
    assert!(route_to_peer(err).2.contains("gvisor"));
    assert!(rt.backend_of(&p).is_none());
}

#[tokio::test]
async fn explicit_choice_that_cannot_run_the_os_routes_to_peer() {
    let node = Node::new();
    let rt = node
        .composite(true)
        .with_handler("hcs-handler", Arc::new(node.primary.clone()));
    let p = pod("web.default");
    let s = SandboxSpec {
        runtime_handler: "hcs-handler".into(),
        os: Some("linux".into()),
        ..spec()
    };
    let (_, os, _) = route_to_peer(rt.run_pod_sandbox(&p, &s).await.unwrap_err());
    assert_eq!(os, "linux");
}

#[tokio::test]
async fn container_image_the_pod_backend_cannot_run_routes_to_peer() {
    let node = Node::new();
    let rt = node.composite(true);
    rt.pull_image(&PullRequest {
        reference: "docker.io/library/busybox:latest".into(),
        auth: None,
    })
    .await
    .unwrap();
    let p = pod("web.default");
    rt.run_pod_sandbox(&p, &spec()).await.unwrap(); // on hcs (windows)
    let c = ctr(&p, "app");
    let err = rt
        .create_container(
            &p,
            &c,
            &ContainerSpec {
                image: "docker.io/library/busybox:latest".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(route_to_peer(err).1, "linux");
    assert!(rt.backend_of(&c).is_none());
    assert!(node.who("create_container", &c).is_empty());
}

#[tokio::test]
async fn a_container_image_whose_pull_was_routed_to_peer_is_refused_the_same_way() {
    let youki = MockRuntime::new("youki", &["linux"])
        .with_registry_image(linux_image())
        .with_registry_image(windows_image());
    let rt = CompositeRuntime::new(Arc::new(youki.clone()));
    let reference = "mcr.microsoft.com/windows/nanoserver:ltsc2022";
    let pulled = rt
        .pull_image(&PullRequest {
            reference: reference.into(),
            auth: None,
        })
        .await;
    assert_eq!(route_to_peer(pulled.unwrap_err()).1, "windows");
    let p = pod("iis.default");
    rt.run_pod_sandbox(&p, &spec()).await.unwrap();
    let Some(Error::RouteToPeer {
        required_os,
        container_id,
        reason,
        ..
    }) = rt.refusal_of_missing_image(&p, reference).await
    else {
        panic!("expected RouteToPeer");
    };
    assert_eq!(
        (required_os.as_str(), container_id),
        ("windows", p.to_string())
    );
    assert!(reason.contains("kubernetes.io/os: windows"), "{reason}");
    // An image nobody refused is just missing.
    assert!(rt
        .refusal_of_missing_image(&p, "busybox:nope")
        .await
        .is_none());
}

#[tokio::test]
async fn routes_handed_back_survive_a_restart() {
    let node = Node::new();
    let p = pod("web.default");
    let c = ctr(&p, "app");
    let linux = SandboxSpec {
        os: Some("linux".into()),
        ..spec()
    };
    let chosen = {
        let rt = node.composite(true);
        // The caller learns the choice before the backend runs the pod, to record it.
        let chosen = rt.choose(&p, &linux).await.unwrap();
        assert_eq!(chosen, "wsl");
        assert!(node.who("run_pod_sandbox", &p).is_empty());
        rt.run_pod_sandbox(&p, &linux).await.unwrap();
        assert_eq!(node.who("run_pod_sandbox", &p), ["wsl"]);
        rt.create_container(&p, &c, &ContainerSpec::default())
            .await
            .unwrap();
        chosen
    };
    let restarted = node
        .composite(true)
        .with_routes([(p.clone(), chosen.clone()), (c.clone(), chosen)]);
    restarted.start_container(&c).await.unwrap();
    assert_eq!(node.who("start_container", &c), ["wsl"]);
    restarted.remove_container(&c).await.unwrap();
    restarted.remove_pod_sandbox(&p).await.unwrap();
    assert!(restarted.backend_of(&c).is_none() && restarted.backend_of(&p).is_none());
    // Without the routes a restarted composite knows nothing to tear down.
    let forgetful = node.composite(true);
    assert!(forgetful
        .start_container(&c)
        .await
        .unwrap_err()
        .is_not_found());
}

#[tokio::test]
async fn a_chosen_route_is_undone_by_removing_the_pod() {
    let node = Node::new();
    let rt = node.composite(true);
    let p = pod("web.default");
    assert_eq!(rt.choose(&p, &spec()).await.unwrap(), "hcs");
    rt.remove_pod_sandbox(&p).await.unwrap();
    assert!(rt.backend_of(&p).is_none());
    assert_eq!(node.who("remove_pod_sandbox", &p), ["hcs"]);
}

#[tokio::test]
async fn failed_backend_call_leaves_no_record() {
    let node = Node::new();
    node.primary
        .fail("run_pod_sandbox", || Error::backend("hcs", "boom"));
    let rt = node.composite(true);
    let p = pod("web.default");
    assert!(rt.run_pod_sandbox(&p, &spec()).await.is_err());
    assert!(rt.backend_of(&p).is_none());

    let q = pod("ok.default");
    node.delegate
        .fail("create_container", || Error::InvalidSpec("bad".into()));
    rt.run_pod_sandbox(
        &q,
        &SandboxSpec {
            os: Some("linux".into()),
            ..spec()
        },
    )
    .await
    .unwrap();
    let c = ctr(&q, "app");
    assert!(rt
        .create_container(&q, &c, &ContainerSpec::default())
        .await
        .is_err());
    assert!(rt.backend_of(&c).is_none());
}

#[tokio::test]
async fn teardown_of_unknown_objects_succeeds_but_other_verbs_are_not_found() {
    let node = Node::new();
    let rt = node.composite(true);
    let p = pod("ghost.default");
    let c = ctr(&p, "app");
    rt.stop_pod_sandbox(&p).await.unwrap();
    rt.remove_pod_sandbox(&p).await.unwrap();
    rt.stop_container(&c, Duration::ZERO).await.unwrap();
    rt.remove_container(&c).await.unwrap();
    assert!(rt.start_container(&c).await.unwrap_err().is_not_found());
    let err = rt
        .create_container(&p, &c, &ContainerSpec::default())
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(node.primary.calls().is_empty(), "no backend was bothered");
}

#[tokio::test]
async fn pull_fans_out_and_tolerates_wrong_platform_and_delegate_failures() {
    let node = Node::new();
    let rt = node.composite(true);
    // Linux image: the Windows primary refuses (WrongPlatform), the delegate pulls.
    let info = rt
        .pull_image(&PullRequest {
            reference: "docker.io/library/busybox:latest".into(),
            auth: None,
        })
        .await
        .unwrap();
    assert_eq!(info.id, "sha256:linux");
    assert!(node.delegate.holds_image("sha256:linux"));
    assert!(!node.primary.holds_image("sha256:linux"));

    // A failing delegate does not fail a pull the primary could serve.
    node.delegate.fail("pull_image", || Error::Unavailable {
        service: "wsl".into(),
        message: "down".into(),
    });
    let info = rt
        .pull_image(&PullRequest {
            reference: "sha256:windows".into(),
            auth: None,
        })
        .await
        .unwrap();
    assert_eq!(info.id, "sha256:windows");
}

#[tokio::test]
async fn pull_fails_when_no_backend_could_pull() {
    let node = Node::new();
    let rt = node.composite(true);
    let err = rt
        .pull_image(&PullRequest {
            reference: "nope".into(),
            auth: None,
        })
        .await
        .unwrap_err();
    assert!(err.is_not_found());

    // Nobody here runs Linux: the image belongs on a peer; the refusal keeps the
    // primary's WrongPlatform text.
    let alone = node.composite(false);
    let err = alone
        .pull_image(&PullRequest {
            reference: "sha256:linux".into(),
            auth: None,
        })
        .await
        .unwrap_err();
    let text = err.to_string();
    let (service, os, _) = route_to_peer(err);
    assert_eq!(
        (service.as_str(), os.as_str()),
        ("image sha256:linux", "linux")
    );
    assert!(text.contains("kubernetes.io/os: linux"), "{text}");

    // A real failure is preferred over a platform refusal.
    node.delegate.fail("pull_image", || Error::Unavailable {
        service: "registry".into(),
        message: "down".into(),
    });
    let err = rt
        .pull_image(&PullRequest {
            reference: "sha256:linux".into(),
            auth: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
}

#[tokio::test]
async fn list_merges_backends_and_fails_only_when_all_fail() {
    let node = Node::new();
    let rt = node.composite(true);
    for r in ["sha256:linux", "sha256:windows"] {
        rt.pull_image(&PullRequest {
            reference: r.into(),
            auth: None,
        })
        .await
        .unwrap();
    }
    let mut ids: Vec<String> = rt
        .list_images()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["sha256:linux", "sha256:windows"]);

    node.primary
        .fail("list_images", || Error::backend("hcs", "down"));
    let ids: Vec<String> = rt
        .list_images()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert_eq!(ids, ["sha256:linux"]);

    node.delegate
        .fail("list_images", || Error::backend("wsl", "down"));
    assert!(rt.list_images().await.is_err());
}

#[tokio::test]
async fn list_merges_the_same_image_held_twice() {
    let both = image("docker.io/library/busybox:latest", "sha256:multi", "linux");
    let mut other_tag = both.clone();
    other_tag.repo_tags = vec!["docker.io/library/busybox:1".into()];
    let primary = MockRuntime::new("a", &["linux"]).with_registry_image(both);
    let second = MockRuntime::new("b", &["linux"]).with_registry_image(other_tag);
    let rt = CompositeRuntime::new(Arc::new(primary)).with_delegate(Arc::new(second));
    rt.pull_image(&PullRequest {
        reference: "sha256:multi".into(),
        auth: None,
    })
    .await
    .unwrap();
    let images = rt.list_images().await.unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(
        images[0].repo_tags,
        [
            "docker.io/library/busybox:latest",
            "docker.io/library/busybox:1"
        ]
    );
}

#[tokio::test]
async fn status_and_remove_span_backends() {
    let node = Node::new();
    let rt = node.composite(true);
    rt.pull_image(&PullRequest {
        reference: "sha256:linux".into(),
        auth: None,
    })
    .await
    .unwrap();
    assert_eq!(
        rt.image_status("sha256:linux")
            .await
            .unwrap()
            .map(|i| i.id)
            .as_deref(),
        Some("sha256:linux")
    );
    assert_eq!(rt.image_status("sha256:absent").await.unwrap(), None);

    node.primary
        .fail("image_status", || Error::backend("hcs", "down"));
    assert!(
        rt.image_status("sha256:linux").await.unwrap().is_some(),
        "one backend down is tolerated"
    );

    node.primary
        .fail("remove_image", || Error::backend("hcs", "down"));
    rt.remove_image("sha256:linux").await.unwrap();
    assert!(!node.delegate.holds_image("sha256:linux"));
    rt.remove_image("sha256:linux").await.unwrap();
    node.delegate
        .fail("remove_image", || Error::backend("wsl", "down"));
    assert!(
        rt.remove_image("sha256:linux").await.is_err(),
        "fails only when every backend failed"
    );
}

#[tokio::test]
async fn fs_info_collects_every_backend() {
    let node = Node::new();
    let rt = node.composite(true);
    let mounts: Vec<String> = rt
        .image_fs_info()
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.mountpoint.display().to_string())
        .collect();
    assert_eq!(mounts, ["/mock/hcs", "/mock/wsl"]);
}

#[tokio::test]
async fn handlers_are_listed_default_first() {
    let node = Node::new();
    let rt = node
        .composite(true)
        .with_handler("runc", Arc::new(node.primary.clone()))
        .with_handler("kata", Arc::new(node.delegate.clone()));
    assert_eq!(rt.runtime_handlers(), ["", "kata", "runc"]);
}

#[tokio::test]
async fn an_image_looked_up_once_is_not_looked_up_again_to_check_a_container() {
    let node = Node::new();
    let rt = node.composite(true);
    let busybox = "docker.io/library/busybox:latest";
    // Pulled by an earlier run: this composite has no OS noted for it.
    node.delegate
        .pull_image(&PullRequest {
            reference: busybox.into(),
            auth: None,
        })
        .await
        .unwrap();
    let p = pod("web.default");
    rt.run_pod_sandbox(
        &p,
        &SandboxSpec {
            os: Some("linux".into()),
            ..spec()
        },
    )
    .await
    .unwrap();
    let lookups = || {
        node.primary
            .calls()
            .iter()
            .filter(|c| c.operation == "image_status")
            .count()
    };
    rt.image_status(busybox).await.unwrap().unwrap();
    let before = lookups();
    let c = ctr(&p, "app");
    rt.create_container(
        &p,
        &c,
        &ContainerSpec {
            image: busybox.into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(lookups(), before);
    assert_eq!(node.who("create_container", &c), ["wsl"]);
}

/// A Linux node with a delegate on the `wsl2` handler, as `berth serve` wires it.
fn linux_node_with_delegate() -> (MockRuntime, MockRuntime, CompositeRuntime) {
    let youki = MockRuntime::new("youki", &["linux"]).with_registry_image(linux_image());
    let delegate = MockRuntime::new("delegate", &["linux"]).sharing_calls(&youki);
    let rt = CompositeRuntime::new(Arc::new(youki.clone()))
        .with_delegate(Arc::new(delegate.clone()))
        .with_handler("wsl2", Arc::new(delegate.clone()));
    (youki, delegate, rt)
}

#[tokio::test]
async fn the_delegate_handler_runs_the_pod_on_the_delegate_for_its_life() {
    let (youki, delegate, rt) = linux_node_with_delegate();
    let p = pod("web.default");
    let s = SandboxSpec {
        runtime_handler: "wsl2".into(),
        ..spec()
    };
    rt.run_pod_sandbox(&p, &s).await.unwrap();
    assert_eq!(rt.backend_of(&p).as_deref(), Some("delegate"));
    assert!(delegate.holds_sandbox(&p));
    assert!(!youki.holds_sandbox(&p));
    // A pod without a handler stays on the node's own backend.
    let local = pod("db.default");
    rt.run_pod_sandbox(&local, &spec()).await.unwrap();
    assert_eq!(rt.backend_of(&local).as_deref(), Some("youki"));
}

#[tokio::test]
async fn an_unreachable_delegate_refuses_new_pods_with_route_to_peer_and_creates_nothing() {
    let (youki, delegate, rt) = linux_node_with_delegate();
    delegate.fail("ready", || Error::Unavailable {
        service: "delegate at unix:///run/d.sock".into(),
        message: "connection refused".into(),
    });
    let p = pod("web.default");
    let s = SandboxSpec {
        runtime_handler: "wsl2".into(),
        ..spec()
    };
    let err = rt.run_pod_sandbox(&p, &s).await.unwrap_err();
    let Error::RouteToPeer {
        handler,
        container_id,
        reason,
        ..
    } = err
    else {
        panic!("expected RouteToPeer, got {err:?}");
    };
    assert_eq!(handler, "wsl2");
    assert_eq!(container_id, p.to_string());
    assert!(reason.contains("unix:///run/d.sock"), "{reason}");
    assert!(rt.backend_of(&p).is_none());
    assert!(delegate
        .calls()
        .iter()
        .all(|c| c.operation != "run_pod_sandbox"));
    // The node's own pods are not affected.
    rt.run_pod_sandbox(&pod("db.default"), &spec())
        .await
        .unwrap();
    assert!(youki.holds_sandbox(&pod("db.default")));
}

#[tokio::test]
async fn an_os_no_backend_runs_routes_to_peer_naming_handler_and_id() {
    let (_youki, _delegate, rt) = linux_node_with_delegate();
    let p = pod("iis.default");
    let s = SandboxSpec {
        os: Some("windows".into()),
        ..spec()
    };
    let err = rt.run_pod_sandbox(&p, &s).await.unwrap_err();
    let Error::RouteToPeer {
        required_os,
        container_id,
        reason,
        ..
    } = err
    else {
        panic!("expected RouteToPeer, got {err:?}");
    };
    assert_eq!(required_os, "windows");
    assert_eq!(container_id, p.to_string());
    assert!(reason.contains("windows node"), "{reason}");
    assert!(rt.backend_of(&p).is_none());
}

#[tokio::test]
async fn an_os_only_the_delegate_runs_goes_to_the_delegate() {
    let youki = MockRuntime::new("youki", &["linux"]);
    let delegate = MockRuntime::new("delegate", &["windows"]).sharing_calls(&youki);
    let rt = CompositeRuntime::new(Arc::new(youki.clone()))
        .with_delegate(Arc::new(delegate.clone()))
        .with_handler("wsl2", Arc::new(delegate.clone()));
    let p = pod("iis.default");
    let s = SandboxSpec {
        os: Some("windows".into()),
        ..spec()
    };
    rt.run_pod_sandbox(&p, &s).await.unwrap();
    assert_eq!(rt.backend_of(&p).as_deref(), Some("delegate"));
}
