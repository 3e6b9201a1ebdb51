//! The youki backend: runs Linux containers with libcontainer from images in berth's
//! own [`ImageStore`]. For now it serves the image operations; the pod and container
//! verbs keep the trait's `Unsupported` defaults until they land.

pub mod cgroups;
mod client;
mod clock;
mod finish;
mod layout;
mod records;
mod rootfs;
pub mod shim;
mod stats;
mod user;
mod wire;

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::image::ImageStore;
use crate::runtime::Runtime;
use crate::types::{FsUsage, ImageInfo, PullRequest};

const NAME: &str = "youki";

/// The youki backend.
pub struct YoukiRuntime {
    images: Arc<ImageStore>,
}

impl YoukiRuntime {
    /// A backend serving images from `images`.
    pub fn new(images: Arc<ImageStore>) -> Self {
        YoukiRuntime { images }
    }

    /// The image store, for the container verbs (rootfs from `layer_dirs`).
    pub fn images(&self) -> &Arc<ImageStore> {
        &self.images
    }

    /// Runs a store call that touches the disk on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ImageStore) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let images = self.images.clone();
        tokio::task::spawn_blocking(move || f(&images))
            .await
            .map_err(|e| Error::backend(NAME, format!("image store task failed: {e}")))?
    }
}

#[async_trait]
impl Runtime for YoukiRuntime {
    fn name(&self) -> &str {
        NAME
    }

    fn runs_os(&self, os: &str) -> bool {
        os == "linux"
    }

    async fn pull_image(&self, request: &PullRequest) -> Result<ImageInfo> {
        self.images.pull(request).await.map_err(|e| match e {
            Error::WrongPlatform {
                image,
                platform,
                supported,
                ..
            } => Error::WrongPlatform {
                image,
                platform,
                backend: NAME.into(),
                supported,
            },
            other => other,
        })
    }

    async fn image_status(&self, reference: &str) -> Result<Option<ImageInfo>> {
        let reference = reference.to_string();
        self.blocking(move |s| s.status(&reference)).await
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>> {
        self.blocking(ImageStore::list).await
    }

    async fn remove_image(&self, reference: &str) -> Result<()> {
        let reference = reference.to_string();
        self.blocking(move |s| s.remove(&reference)).await
    }

    async fn image_fs_info(&self) -> Result<Vec<FsUsage>> {
        Ok(vec![self.blocking(ImageStore::fs_info).await?])
    }
}
