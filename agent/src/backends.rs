//! Builds the runtime berth serves: the one place that knows which backends exist.

use std::sync::Arc;

use async_trait::async_trait;
use runtimes::types::{FsUsage, ImageInfo, PullRequest};
use runtimes::{CompositeRuntime, Runtime};

use crate::config::Config;
use crate::error::Result;
use crate::store::Store;

/// What the CRI services run on.
pub struct Backends {
    /// The runtime every CRI call goes to: a `CompositeRuntime` over the backends.
    pub runtime: Arc<dyn Runtime>,
    /// The runtime handlers this node serves, the default `""` first, for `Status`.
    pub handlers: Vec<String>,
}

/// Builds the backends from the config, behind a `CompositeRuntime` whose dispatch
/// records live in `store`.
pub fn build(config: &Config, store: Arc<Store>) -> Result<Backends> {
    // TODO(integration): the primary backend is `NoBackend` until `runtimes::image` and
    // `runtimes::youki` are on main; then it becomes
    //
    //     let images = Arc::new(runtimes::image::ImageStore::open(
    //         &config.state_dir.join("images"),
    //         config.registries.clone(),
    //     )?);
    //     let primary: Arc<dyn Runtime> = Arc::new(runtimes::youki::YoukiRuntime::new(images));
    let _ = config;
    let primary: Arc<dyn Runtime> = Arc::new(NoBackend);
    let composite = CompositeRuntime::new(primary, store)?;
    Ok(Backends {
        handlers: composite.runtime_handlers(),
        runtime: Arc::new(composite),
    })
}

/// The primary backend of a berth built without one. Every image call fails with
/// `Unsupported` (gRPC `Unimplemented`, naming the `none` backend) and `Status`
/// reports the runtime not ready, so nothing pretends to work.
struct NoBackend;

#[async_trait]
impl Runtime for NoBackend {
    fn name(&self) -> &str {
        "none"
    }

    fn runs_os(&self, _os: &str) -> bool {
        false
    }

    async fn pull_image(&self, _request: &PullRequest) -> runtimes::Result<ImageInfo> {
        Err(self.unsupported("PullImage"))
    }

    async fn image_status(&self, _reference: &str) -> runtimes::Result<Option<ImageInfo>> {
        Err(self.unsupported("ImageStatus"))
    }

    async fn list_images(&self) -> runtimes::Result<Vec<ImageInfo>> {
        Err(self.unsupported("ListImages"))
    }

    async fn remove_image(&self, _reference: &str) -> runtimes::Result<()> {
        Err(self.unsupported("RemoveImage"))
    }

    async fn image_fs_info(&self) -> runtimes::Result<Vec<FsUsage>> {
        Err(self.unsupported("ImageFsInfo"))
    }
}
