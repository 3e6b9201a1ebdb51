//! `runtimes::containerd::connect` against a real containerd: the generated
//! `containerd-client` services answer over the unix socket, namespaced calls carry
//! the `containerd-namespace` header, and one channel outlives a containerd restart.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use berth_testkit::containerd::Containerd;
use containerd_client::services::v1::introspection_client::IntrospectionClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::namespaces_client::NamespacesClient;
use containerd_client::services::v1::version_client::VersionClient;
use containerd_client::services::v1::{
    CreateNamespaceRequest, CreateRequest, DeleteNamespaceRequest, DeleteRequest,
    ListNamespacesRequest, ListRequest, Namespace, PluginsRequest,
};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::Code;
use runtimes::containerd::connect::{connect, with_namespace};

async fn version(channel: &Channel) -> Result<String, containerd_client::tonic::Status> {
    let reply = VersionClient::new(channel.clone()).version(()).await?;
    Ok(reply.into_inner().version)
}

/// Namespace names in the test's containerd, sorted.
async fn namespaces(channel: &Channel) -> Vec<String> {
    let reply = NamespacesClient::new(channel.clone())
        .list(ListNamespacesRequest::default())
        .await
        .unwrap();
    let mut names: Vec<String> = reply
        .into_inner()
        .namespaces
        .into_iter()
        .map(|n| n.name)
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn version_and_namespaces_over_the_socket() {
    let containerd = Containerd::start();
    let channel = connect(containerd.socket()).await.unwrap();

    assert_eq!(version(&channel).await.unwrap(), "v2.4.2");

    // berth is the CRI: none of containerd's CRI plugins may be loaded.
    let plugins = IntrospectionClient::new(channel.clone())
        .plugins(PluginsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .plugins;
    assert!(plugins
        .iter()
        .any(|p| p.id == "tasks" && p.init_err.is_none()));
    let cri: Vec<String> = plugins
        .iter()
        .filter(|p| p.init_err.is_none())
        .map(|p| format!("{}.{}", p.r#type, p.id))
        .filter(|name| name.contains("cri") || name.contains("podsandbox"))
        .collect();
    assert_eq!(cri, Vec::<String>::new(), "CRI plugins loaded");

    let mut ns = NamespacesClient::new(channel.clone());
    let labels = HashMap::from([("io.berth.test".to_string(), "connect".to_string())]);
    ns.create(CreateNamespaceRequest {
        namespace: Some(Namespace {
            name: "berth".into(),
            labels: labels.clone(),
        }),
    })
    .await
    .unwrap();
    let err = ns
        .create(CreateNamespaceRequest {
            namespace: Some(Namespace {
                name: "berth".into(),
                labels: HashMap::new(),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err}");
    assert_eq!(namespaces(&channel).await, ["berth"]);

    // A namespaced service without the header is refused (FailedPrecondition "namespace
    // is required"); with it, the lease lands in that namespace only. (A lease does not
    // keep its namespace from being deleted; containers, images and snapshots do.)
    let mut leases = LeasesClient::new(channel.clone());
    let err = leases.list(ListRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(err.message().contains("namespace is required"), "{err}");
    let lease = CreateRequest {
        id: "berth-test".into(),
        labels: HashMap::new(),
    };
    leases
        .create(with_namespace("berth", lease).unwrap())
        .await
        .unwrap();
    let listed = leases
        .list(with_namespace("berth", ListRequest::default()).unwrap())
        .await
        .unwrap()
        .into_inner()
        .leases;
    assert_eq!(
        listed.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(),
        ["berth-test"]
    );
    let other = leases
        .list(with_namespace("other", ListRequest::default()).unwrap())
        .await
        .unwrap()
        .into_inner()
        .leases;
    assert!(other.is_empty(), "{other:?}");
    let delete = DeleteRequest {
        id: "berth-test".into(),
        sync: true,
    };
    leases
        .delete(with_namespace("berth", delete).unwrap())
        .await
        .unwrap();
    ns.delete(DeleteNamespaceRequest {
        name: "berth".into(),
    })
    .await
    .unwrap();
    assert_eq!(namespaces(&channel).await, Vec::<String>::new());
}

#[tokio::test]
async fn one_channel_outlives_a_containerd_kill() {
    let mut containerd = Containerd::start();
    let channel = connect(containerd.socket()).await.unwrap();
    let before = containerd.pid();
    assert_eq!(version(&channel).await.unwrap(), "v2.4.2");

    containerd.kill9();
    // The call that finds the connection reset fails with Unknown ("transport error",
    // hyper's ConnectionReset in its source), later ones with Unavailable (the dial
    // fails): a caller maps both to containerd being unreachable.
    let err = version(&channel).await.unwrap_err();
    assert!(
        matches!(err.code(), Code::Unknown | Code::Unavailable),
        "{err}"
    );
    let err = version(&channel).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    // A new connection names the socket it could not reach.
    let err = connect(containerd.socket()).await.unwrap_err();
    assert!(
        err.to_string()
            .contains(&containerd.socket().display().to_string()),
        "{err}"
    );

    containerd.restart();
    assert_ne!(containerd.pid(), before);
    // The channel dials again by itself; allow it a moment, but not a reconnect of ours.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match version(&channel).await {
            Ok(v) => break assert_eq!(v, "v2.4.2"),
            Err(e) if Instant::now() < deadline => {
                assert_eq!(e.code(), Code::Unavailable, "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the channel did not reconnect within 10s: {e}"),
        }
    }
}

#[tokio::test]
async fn debian_containerd_1_6_answers_the_same_client() {
    let containerd = Containerd::start_version("1.6");
    let channel = connect(containerd.socket()).await.unwrap();
    let v = version(&channel).await.unwrap();
    assert!(v.starts_with("1.6."), "{v}");
    // 1.6 publishes an event on Namespaces.Create and wants the namespace header even
    // there (2.4 does not): without it the call fails with Unknown "failed publishing
    // event: namespace is required", yet the namespace was created.
    let mut ns = NamespacesClient::new(channel.clone());
    let create = |name: &str| CreateNamespaceRequest {
        namespace: Some(Namespace {
            name: name.into(),
            labels: HashMap::new(),
        }),
    };
    ns.create(with_namespace("berth", create("berth")).unwrap())
        .await
        .unwrap();
    let err = ns.create(create("plain")).await.unwrap_err();
    assert_eq!(err.code(), Code::Unknown, "{err}");
    assert!(err.message().contains("namespace is required"), "{err}");
    assert_eq!(namespaces(&channel).await, ["berth", "plain"]);
}
