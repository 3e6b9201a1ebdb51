//! The CRI v1 gRPC services. One file per verb (or a small group): validate the
//! request into `runtimes` values, call the runtime, map the answer back. Runtime
//! errors become statuses only through [`crate::status`].

mod image;
mod image_fs_info;
mod image_service;
mod image_status;
mod list_images;
mod pull_image;
mod remove_image;
mod runtime_config;
mod runtime_service;
mod runtime_status;
mod unimplemented;
mod version;

use std::sync::Arc;

use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;
use runtimes::Runtime;

use crate::config::Config;

/// kubelet's limit for CRI messages (16 MiB); tonic's default of 4 MiB is too small
/// for large `ListImages`/`ListContainers` answers.
const MAX_MESSAGE_SIZE: usize = 16 << 20;

/// State shared by both CRI services.
pub struct Cri {
    runtime: Arc<dyn Runtime>,
    handlers: Vec<String>,
    config_json: String,
}

impl Cri {
    /// The services over `runtime`. `handlers` are the runtime handlers this node
    /// serves (the default `""` is always listed); `config` is shown by
    /// `Status{verbose}` with its secrets redacted.
    pub fn new(runtime: Arc<dyn Runtime>, handlers: Vec<String>, config: &Config) -> Self {
        Self {
            runtime,
            handlers,
            config_json: config.redacted_json().to_string(),
        }
    }

    /// The tonic services to add to a server.
    pub fn into_services(self) -> (RuntimeServiceServer<Cri>, ImageServiceServer<Cri>) {
        let cri = Arc::new(self);
        (
            RuntimeServiceServer::from_arc(cri.clone())
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
            ImageServiceServer::from_arc(cri)
                .max_decoding_message_size(MAX_MESSAGE_SIZE)
                .max_encoding_message_size(MAX_MESSAGE_SIZE),
        )
    }
}
