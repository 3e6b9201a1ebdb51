//! A `Cri` for unit tests: a real `CompositeRuntime` over a `MockRuntime`, with a real
//! store in a temporary directory that records each pod's backend.

use std::collections::HashMap;
use std::sync::Arc;

use berth_proto::cri::v1 as cri;
use runtimes::mock::MockRuntime;
use runtimes::{CompositeRuntime, ContainerId, Runtime};
use tempfile::TempDir;

use super::image::tests::busybox;
use super::sandbox_spec::sandbox_spec;
use super::sandbox_spec::tests::request;
use crate::config::Config;
use crate::cri::{create_container, run_pod_sandbox, start_container, Cri};
use crate::identity;
use crate::spec::HostFacts;
use crate::store::{ContainerRecord, SandboxPhase, SandboxRecord, Store};
use crate::streaming::{StreamingConfig, StreamingServer};

/// The image every test container runs.
pub(crate) const IMAGE: &str = "docker.io/library/busybox:1.36";

/// A `Cri` over a mock backend that holds [`IMAGE`].
pub(crate) struct Harness {
    pub(crate) cri: Cri,
    pub(crate) mock: MockRuntime,
    dir: TempDir,
}

impl Harness {
    /// A fresh node.
    pub(crate) async fn new() -> Self {
        let mock = super::image::tests::holding(vec![busybox()]).await;
        let dir = tempfile::tempdir().unwrap();
        let cri = build(&dir, &mock);
        Harness { cri, mock, dir }
    }

    /// A fresh node whose streaming verbs answer URLs of a real streaming server on
    /// 127.0.0.1 (the sessions would run on the mock, which has none).
    pub(crate) async fn with_streaming() -> Self {
        let Harness { cri, mock, dir } = Harness::new().await;
        let runtime: Arc<dyn Runtime> = cri.runtime.clone();
        let server = StreamingServer::start(&StreamingConfig::default(), runtime)
            .await
            .unwrap();
        let cri = cri.with_streaming(Arc::new(server));
        Harness { cri, mock, dir }
    }

    /// `http://127.0.0.1:<port>` of the streaming server.
    pub(crate) fn streaming_base(&self) -> String {
        self.cri
            .streaming
            .as_ref()
            .map(|s| s.base_url().to_string())
            .unwrap_or_default()
    }

    /// The same node after a restart of the agent: a new store handle and composite
    /// over the same files and the same (still running) backend.
    pub(crate) fn restart(self) -> Self {
        let Harness { cri, mock, dir } = self;
        drop(cri);
        let cri = build(&dir, &mock);
        Harness { cri, mock, dir }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.cri.store
    }

    pub(crate) fn runtime(&self) -> &CompositeRuntime {
        &self.cri.runtime
    }

    /// Runs the pod `name` (see `sandbox_spec::tests::request`) and returns its id.
    pub(crate) async fn run_pod(&self, name: &str) -> String {
        run_pod_sandbox::run_pod_sandbox(&self.cri, request(name))
            .await
            .unwrap()
            .pod_sandbox_id
    }

    /// A sandbox recorded as `Creating`, as a crash in the middle of `RunPodSandbox`
    /// leaves it: the backend has it, the record was not updated.
    pub(crate) async fn creating_sandbox(&self, name: &str) -> SandboxRecord {
        let config = request(name).config.unwrap();
        let record = self
            .store()
            .insert::<_, runtimes::Error>(|snapshot| {
                let pod = identity::Pod {
                    name,
                    namespace: "default",
                    labels: &config.labels,
                };
                Ok(SandboxRecord {
                    id: format!("{:0>64}", name.len()),
                    container_id: identity::sandbox_id(&pod, "node-a", &snapshot.allocated)
                        .unwrap(),
                    phase: SandboxPhase::Creating,
                    created_at: 1,
                    runtime_handler: String::new(),
                    config: config.clone(),
                    ips: vec![],
                    backend: String::new(),
                })
            })
            .unwrap();
        let spec = sandbox_spec(&request(name), &HostFacts::default()).unwrap();
        let backend = self
            .cri
            .runtime
            .choose(&record.container_id, &spec)
            .await
            .unwrap();
        let record = self
            .store()
            .update::<SandboxRecord>(&record.id, |r| r.backend = backend)
            .unwrap()
            .unwrap();
        self.cri
            .runtime
            .run_pod_sandbox(&record.container_id, &spec)
            .await
            .unwrap();
        record
    }

    /// Creates the container `name` (attempt 0) in the pod `pod` and returns its id.
    pub(crate) async fn create(&self, pod: &str, name: &str) -> String {
        create_container::create_container(&self.cri, container_request(pod, name, 0))
            .await
            .unwrap()
            .container_id
    }

    /// The pod `web` with the container `app` running in it: (pod id, container id).
    pub(crate) async fn running_app(&self) -> (String, String) {
        let pod = self.run_pod("web").await;
        let id = self.start(&pod, "app").await;
        (pod, id)
    }

    /// True when the backend was asked to `operation` (a `Runtime` method name).
    pub(crate) fn called(&self, operation: &str) -> bool {
        self.mock.calls().iter().any(|c| c.operation == operation)
    }

    /// The ContainerId of the container `id`.
    pub(crate) fn container_id_of(&self, id: &str) -> ContainerId {
        self.store()
            .get::<ContainerRecord>(id)
            .unwrap()
            .unwrap()
            .container_id
    }

    /// The ContainerId of the pod `id`.
    pub(crate) fn sandbox_id_of(&self, id: &str) -> ContainerId {
        self.store()
            .get::<SandboxRecord>(id)
            .unwrap()
            .unwrap()
            .container_id
    }

    /// Creates and starts the container `name` in the pod `pod`.
    pub(crate) async fn start(&self, pod: &str, name: &str) -> String {
        let id = self.create(pod, name).await;
        start_container::start_container(
            &self.cri,
            cri::StartContainerRequest {
                container_id: id.clone(),
            },
        )
        .await
        .unwrap();
        id
    }
}

/// `items`, sorted: list answers come in no particular order.
pub(crate) fn sorted(items: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut items: Vec<String> = items.into_iter().collect();
    items.sort();
    items
}

/// A `CreateContainer` request for the container `name`, attempt `attempt`, in `pod`.
pub(crate) fn container_request(
    pod: &str,
    name: &str,
    attempt: u32,
) -> cri::CreateContainerRequest {
    cri::CreateContainerRequest {
        pod_sandbox_id: pod.to_string(),
        config: Some(cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.to_string(),
                attempt,
            }),
            image: Some(cri::ImageSpec {
                image: IMAGE.to_string(),
                ..Default::default()
            }),
            command: vec!["sleep".into(), "3600".into()],
            log_path: format!("{name}/{attempt}.log"),
            labels: HashMap::from([("tier".into(), name.to_string())]),
            annotations: HashMap::from([("note".into(), "x".into())]),
            ..Default::default()
        }),
        sandbox_config: request("web").config,
    }
}

fn build(dir: &TempDir, mock: &MockRuntime) -> Cri {
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let composite =
        CompositeRuntime::new(Arc::new(mock.clone())).with_routes(store.routes().unwrap());
    let config = Config {
        node_id: "node-a".into(),
        ..Config::default()
    };
    Cri::new(Arc::new(composite), store, &config).with_host_facts(HostFacts::default())
}
