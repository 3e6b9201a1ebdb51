//! Image verbs: the delegate's own image store.

use berth_proto::delegate::{Empty, ImageRef, PullImageRequest, RegistryAuth};

use super::wire::{from_bytes, from_json};
use super::DelegateRuntime;
use crate::error::Result;
use crate::types::{FsUsage, ImageInfo, PullRequest};

impl DelegateRuntime {
    pub(super) async fn pull(&self, request: &PullRequest) -> Result<ImageInfo> {
        let auth = request.auth.as_ref().map(|a| RegistryAuth {
            username: a.username.clone(),
            password: a.password.clone(),
            auth: a.auth.clone(),
            identity_token: a.identity_token.clone(),
            registry_token: a.registry_token.clone(),
        });
        let message = PullImageRequest {
            reference: request.reference.clone(),
            auth,
        };
        let answer = self.client()?.pull_image(message).await;
        from_json(
            "ImageInfo",
            Some(answer.map_err(|s| self.error(s))?.into_inner()),
        )
    }

    pub(super) async fn status_of_image(&self, reference: &str) -> Result<Option<ImageInfo>> {
        let message = ImageRef {
            reference: reference.to_string(),
        };
        let answer = self.client()?.image_status(message).await;
        match answer.map_err(|s| self.error(s))?.into_inner().image {
            Some(image) => from_json("ImageInfo", Some(image)).map(Some),
            None => Ok(None),
        }
    }

    pub(super) async fn images(&self) -> Result<Vec<ImageInfo>> {
        let answer = self.client()?.list_images(Empty {}).await;
        let list = answer.map_err(|s| self.error(s))?.into_inner();
        list.items
            .iter()
            .map(|item| from_bytes("ImageInfo", item))
            .collect()
    }

    pub(super) async fn remove(&self, reference: &str) -> Result<()> {
        let message = ImageRef {
            reference: reference.to_string(),
        };
        let answer = self.client()?.remove_image(message).await;
        answer.map_err(|s| self.error(s))?;
        Ok(())
    }

    pub(super) async fn fs_info(&self) -> Result<Vec<FsUsage>> {
        let answer = self.client()?.image_fs_info(Empty {}).await;
        let list = answer.map_err(|s| self.error(s))?.into_inner();
        list.items
            .iter()
            .map(|item| from_bytes("FsUsage", item))
            .collect()
    }
}
