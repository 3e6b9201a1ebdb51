//! Builds the runtime berth serves: the one place that knows which backends exist.

use std::sync::Arc;

use async_trait::async_trait;
use runtimes::types::{FsUsage, ImageInfo, PullRequest};
use runtimes::Runtime;

use crate::config::Config;
use crate::error::Result;
use crate::store::Store;

/// What the CRI services run on.
pub struct Backends {
    /// The runtime every CRI call goes to (a `CompositeRuntime` over the backends).
    pub runtime: Arc<dyn Runtime>,
    /// Runtime handlers served besides the default `""`, as `Status` lists them.
    pub handlers: Vec<String>,
}

/// Builds the backends from the config. `store` persists the composite's dispatch
/// records (it implements `DispatchLog`).
pub fn build(config: &Config, store: Arc<Store>) -> Result<Backends> {
    // TODO(integration): replace `NoBackend` with the real stack once `runtimes::image`,
    // `runtimes::youki` and `runtimes::composite` are on main:
    //
    //     let images = Arc::new(runtimes::image::ImageStore::open(
    //         &config.state_dir.join("images"),
    //         config.registries.clone(),
    //     )?);
    //     let primary: Arc<dyn Runtime> = Arc::new(runtimes::youki::YoukiRuntime::new(images));
    //     let composite = runtimes::composite::CompositeRuntime::new(primary, store);
    //     return Ok(Backends { runtime: Arc::new(composite), handlers: Vec::new() });
    let _ = (config, store);
    Ok(Backends {
        runtime: Arc::new(NoBackend),
        handlers: Vec::new(),
    })
}

/// The runtime of a berth built without any backend. Every image call fails with
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
