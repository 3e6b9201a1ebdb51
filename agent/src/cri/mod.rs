//! The CRI v1 gRPC services. One file per verb (or a small group): validate the
//! request into `runtimes` values, call the runtime, map the answer back. Runtime
//! errors become statuses only through [`crate::status`].
//!
//! Pod sandboxes and containers are recorded in the [`Store`] before the backend is
//! asked to make them (`Creating`), and updated once it has: a crash in between
//! leaves a record that start-up ([`crate::reconcile`]) rolls back. No store
//! transaction is ever open across a backend call.

// The verbs, one file each, named as in CRI (`status` is `Status`).
mod attach;
mod container_stats;
mod container_status;
mod create_container;
mod exec;
mod exec_sync;
mod image_fs_info;
mod image_status;
mod list_container_stats;
mod list_containers;
mod list_images;
mod list_metric_descriptors;
mod list_pod_sandbox;
mod list_pod_sandbox_metrics;
mod list_pod_sandbox_stats;
mod pod_sandbox_stats;
mod pod_sandbox_status;
mod port_forward;
mod pull_image;
mod remove_container;
mod remove_image;
mod remove_pod_sandbox;
mod reopen_container_log;
mod run_pod_sandbox;
mod runtime_config;
mod start_container;
mod status;
mod stop_container;
mod stop_pod_sandbox;
mod update_container_resources;
mod update_pod_sandbox_resources;
mod update_runtime_config;
mod version;

// Not verbs: the tonic service impls that route each verb to its file, and what the
// verbs share.
mod services;
mod shared;

#[cfg(test)]
pub(crate) use shared::testing;

use std::sync::Arc;

use berth_proto::cri::v1::image_service_server::ImageServiceServer;
use berth_proto::cri::v1::runtime_service_server::RuntimeServiceServer;
use runtimes::CompositeRuntime;

use crate::config::Config;
use crate::nri::Nri;
use crate::spec::HostFacts;
use crate::store::Store;
use crate::streaming::StreamingServer;

pub use services::encoded::RuntimeServer;
pub use status::{network_not_wired, NetworkReadiness};
pub use update_runtime_config::{pod_cidr_unused, PodCidrSink};

/// kubelet's limit for CRI messages (16 MiB); tonic's default of 4 MiB is too small
/// for large `ListImages`/`ListContainers` answers.
pub(crate) const MAX_MESSAGE_SIZE: usize = 16 << 20;

/// State shared by both CRI services.
pub struct Cri {
    /// The composite itself (not only `dyn Runtime`): verbose status shows which
    /// backend an object was dispatched to.
    runtime: Arc<CompositeRuntime>,
    store: Arc<Store>,
    node_id: String,
    host: HostFacts,
    /// The runtime handlers served and their backends' features (probed once, when
    /// the backends opened).
    handlers: Vec<(String, runtimes::types::Features)>,
    config_json: String,
    network_ready: NetworkReadiness,
    /// Where `UpdateRuntimeConfig`'s pod CIDR goes.
    pod_cidr: PodCidrSink,
    /// `GetContainerEvents`' channel.
    events: shared::events::Events,
    cpu: shared::stats::CpuRates,
    /// Where `Exec`, `Attach` and `PortForward` URLs point; without it they answer
    /// `Unimplemented`.
    streaming: Option<Arc<StreamingServer>>,
    /// `ListContainers`' encoded entries (`list_containers_encoded`).
    encoded_containers: Arc<list_containers::EncodedEntries>,
    /// NRI plugins (none unless [`Cri::with_nri`]).
    nri: Arc<Nri>,
    /// `ListPodSandbox`' encoded entries (`list_pod_sandbox_encoded`).
    encoded_pods: Arc<list_pod_sandbox::EncodedPods>,
}

impl Cri {
    /// The services over `runtime`, recording pods and containers in `store`. `config`
    /// gives the node id and is shown by `Status{verbose}` with its secrets redacted.
    /// NetworkReady stays false until [`Cri::with_network_readiness`] wires a check.
    pub fn new(runtime: Arc<CompositeRuntime>, store: Arc<Store>, config: &Config) -> Self {
        Self {
            handlers: runtime
                .runtime_handlers()
                .into_iter()
                .map(|h| {
                    let features = runtime.handler_features(&h).unwrap_or_default();
                    (h, features)
                })
                .collect(),
            runtime,
            store,
            node_id: config.node_id.clone(),
            host: HostFacts::detect(),
            config_json: config.redacted_json().to_string(),
            network_ready: network_not_wired(),
            pod_cidr: pod_cidr_unused(),
            events: Default::default(),
            cpu: shared::stats::CpuRates::default(),
            streaming: None,
            encoded_containers: Default::default(),
            nri: Nri::disabled(),
            encoded_pods: Default::default(),
        }
    }

    /// Sends pod and container events to `nri`'s plugins and applies their
    /// adjustments.
    pub fn with_nri(mut self, nri: Arc<Nri>) -> Self {
        self.nri = nri;
        self
    }

    /// Answers `Exec`, `Attach` and `PortForward` with URLs of `server`.
    pub fn with_streaming(mut self, server: Arc<StreamingServer>) -> Self {
        self.streaming = Some(server);
        self
    }

    /// The streaming server, or `Unsupported` naming `method` when there is none.
    fn streaming(&self, method: &'static str) -> runtimes::Result<&StreamingServer> {
        self.streaming
            .as_deref()
            .ok_or_else(|| runtimes::Error::Unsupported {
                backend: "berth (no streaming server)".into(),
                operation: method,
            })
    }

    /// Reports NetworkReady from `check` (`Ok` when pod networking is ready, else why
    /// not).
    pub fn with_network_readiness(mut self, check: NetworkReadiness) -> Self {
        self.network_ready = check;
        self
    }

    /// Hands the pod CIDR kubelet sends (`UpdateRuntimeConfig`) to `sink`.
    pub fn with_pod_cidr(mut self, sink: PodCidrSink) -> Self {
        self.pod_cidr = sink;
        self
    }

    /// Replaces the detected host facts the container specs are built with.
    pub fn with_host_facts(mut self, host: HostFacts) -> Self {
        self.host = host;
        self
    }

    /// The pod of `container` and the container as NRI describes them; `None` when
    /// no plugin listens (or the pod is gone).
    fn nri_objects(
        &self,
        container: &crate::store::ContainerRecord,
    ) -> Option<(berth_proto::nri::PodSandbox, berth_proto::nri::Container)> {
        if !self.nri.active() {
            return None;
        }
        let pod = self
            .store
            .get::<crate::store::SandboxRecord>(&container.sandbox_id)
            .ok()??;
        Some((
            crate::nri::pod_of(&pod),
            crate::nri::container_of(container),
        ))
    }

    /// Applies NRI plugins' resource updates of containers (other than the one whose
    /// event asked them) through the backend, as containerd does. One that fails
    /// fails the call unless every plugin asking it let failures be ignored.
    async fn apply_nri_updates(
        &self,
        method: &str,
        updates: &crate::nri::Updates,
    ) -> runtimes::Result<()> {
        for (id, resources, ignore_failure) in &updates.updates {
            if resources.is_empty() {
                continue;
            }
            let applied = async {
                let record = self
                    .store
                    .get::<crate::store::ContainerRecord>(id)?
                    .ok_or_else(|| runtimes::Error::not_found("container", id))?;
                let oci = resources
                    .to_oci(self.host.swap_controller)
                    .map_err(|e| runtimes::Error::InvalidSpec(e.to_string()))?;
                runtimes::Runtime::update_container_resources(
                    self.runtime.as_ref(),
                    &record.container_id,
                    &oci,
                )
                .await
            }
            .await;
            match applied {
                Ok(()) => {}
                Err(err) if *ignore_failure => {
                    tracing::warn!(container = id, error = %err, "NRI update of a container failed (ignored)");
                }
                Err(err) => {
                    return Err(runtimes::Error::FailedPrecondition(format!(
                        "{method}: an NRI plugin's update of container {id} failed: {err}"
                    )))
                }
            }
        }
        Ok(())
    }

    /// The tonic services to add to a server.
    pub fn into_services(self) -> (RuntimeServer, ImageServiceServer<Cri>) {
        let cri = Arc::new(self);
        tokio::spawn(shared::events::watch_exits(Arc::downgrade(&cri)));
        (
            RuntimeServer::new(
                RuntimeServiceServer::from_arc(cri.clone())
                    .max_decoding_message_size(MAX_MESSAGE_SIZE)
                    .max_encoding_message_size(MAX_MESSAGE_SIZE),
                cri.clone(),
            ),
            ImageServiceServer::from_arc(cri)
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
        )
    }
}
