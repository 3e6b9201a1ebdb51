//! Image operations fanned out to every backend, with the tolerance rules: one
//! backend's failure does not fail a list or a lookup; a pull fails only when no
//! backend could pull the image.

use std::future::Future;
use std::sync::Arc;

use futures::future::join_all;
use tracing::Instrument;

use super::{write, CompositeRuntime};
use crate::error::{Error, Result};
use crate::runtime::Runtime;
use crate::types::{FsUsage, ImageInfo, PullRequest};

impl CompositeRuntime {
    /// Pulls into every backend at once; succeeds with the first (in backend order)
    /// backend's answer. A `WrongPlatform` refusal is expected from a backend that does
    /// not run the image's OS, so any other error is the one reported when nobody
    /// succeeded.
    pub(super) async fn fan_out_pull(&self, request: &PullRequest) -> Result<ImageInfo> {
        let mut first_ok = None;
        let mut wrong_platform = None;
        let mut failure = None;
        for (backend, result) in self
            .on_each_backend(|b| {
                b.pull_image(request)
                    .instrument(super::traced(b, "PullImage", None))
            })
            .await
        {
            match result {
                Ok(info) => {
                    self.note_image_os(Some(&request.reference), &info);
                    first_ok.get_or_insert(info);
                }
                Err(e) => {
                    tracing::debug!(backend, error = %e, "backend did not pull the image");
                    match e {
                        Error::WrongPlatform { .. } => wrong_platform.get_or_insert(e),
                        _ => failure.get_or_insert(e),
                    };
                }
            }
        }
        match (first_ok, failure.or(wrong_platform)) {
            (Some(info), _) => Ok(info),
            (None, Some(e)) => Err(self.route_to_peer_if_no_backend_runs(request, e)),
            // The node's config is wrong, not the request.
            (None, None) => Err(Error::FailedPrecondition(
                "composite: no backend is configured".into(),
            )),
        }
    }

    /// Every backend refused the image for its platform: when its OS is one no backend
    /// of this node runs (a Windows image on a Linux node without a Windows delegate),
    /// the image belongs on a peer, and the refusal says so (`RouteToPeer`, the same
    /// code). An architecture mismatch alone stays `WrongPlatform`. The reference's OS
    /// is noted, so a container asking for it is refused the same way.
    fn route_to_peer_if_no_backend_runs(&self, request: &PullRequest, e: Error) -> Error {
        let Error::WrongPlatform { platform, .. } = &e else {
            return e;
        };
        let os = platform.split('/').next().unwrap_or_default().to_string();
        if os.is_empty() || self.backends().iter().any(|b| b.runs_os(&os)) {
            return e;
        }
        write(&self.image_os).insert(request.reference.clone(), os.clone());
        let backends: Vec<&str> = self.backends().iter().map(|b| b.name()).collect();
        Error::RouteToPeer {
            service: format!("image {}", request.reference),
            required_os: os.clone(),
            handler: String::new(),
            container_id: String::new(),
            reason: format!(
                "{e}; no backend of this node runs {os} (backends: {}): configure a delegate \
                 that does, or give the pod a nodeSelector `kubernetes.io/os: {os}`",
                backends.join(", ")
            ),
        }
    }

    /// The first backend (in order) that holds `reference` describes it. Its OS is
    /// noted, so the check of a container's image that follows asks no backend again.
    pub(super) async fn fan_out_status(&self, reference: &str) -> Result<Option<ImageInfo>> {
        let mut failure = None;
        let mut answered = false;
        for backend in self.backends() {
            match backend.image_status(reference).await {
                Ok(Some(info)) => {
                    self.note_image_os(Some(reference), &info);
                    return Ok(Some(info));
                }
                Ok(None) => answered = true,
                Err(e) => {
                    tracing::debug!(backend = backend.name(), error = %e, "image status failed");
                    failure.get_or_insert(e);
                }
            }
        }
        match failure {
            Some(e) if !answered => Err(e),
            _ => Ok(None),
        }
    }

    /// Every backend's images, merged by image id.
    pub(super) async fn fan_out_list(&self) -> Result<Vec<ImageInfo>> {
        let lists = answers_or_error(self.on_each_backend(|b| b.list_images()).await)?;
        let mut merged: Vec<ImageInfo> = Vec::new();
        for image in lists.into_iter().flatten() {
            merge_into(&mut merged, image);
        }
        Ok(merged)
    }

    /// Removes from every backend (each is idempotent). A backend that failed keeps
    /// the image; the call fails only when every backend failed, so a node with one
    /// backend down can still free space on the others.
    pub(super) async fn fan_out_remove(&self, reference: &str) -> Result<()> {
        answers_or_error(self.on_each_backend(|b| b.remove_image(reference)).await)?;
        Ok(())
    }

    /// Every backend's image filesystems.
    pub(super) async fn fan_out_fs_info(&self) -> Result<Vec<FsUsage>> {
        let usages = answers_or_error(self.on_each_backend(|b| b.image_fs_info()).await)?;
        Ok(usages.into_iter().flatten().collect())
    }

    /// Runs `call` on every backend at once; each backend's name with its result.
    async fn on_each_backend<'a, T, Fut>(
        &'a self,
        call: impl Fn(&'a Arc<dyn Runtime>) -> Fut,
    ) -> Vec<(&'a str, Result<T>)>
    where
        Fut: Future<Output = Result<T>> + 'a,
    {
        let backends = self.backends();
        let results = join_all(backends.iter().map(|b| call(b))).await;
        backends.iter().map(|b| b.name()).zip(results).collect()
    }
}

/// The successful answers, in backend order; the first error when none succeeded.
/// A failing backend is logged here, the only place that sees it.
fn answers_or_error<T>(results: Vec<(&str, Result<T>)>) -> Result<Vec<T>> {
    let mut answers = Vec::new();
    let mut failure = None;
    for (backend, result) in results {
        match result {
            Ok(answer) => answers.push(answer),
            Err(e) => {
                tracing::warn!(backend, error = %e, "backend failed; answering from the others");
                failure.get_or_insert(e);
            }
        }
    }
    match failure {
        Some(e) if answers.is_empty() => Err(e),
        _ => Ok(answers),
    }
}

/// Adds `image` to `merged`, folding it into an entry with the same id.
fn merge_into(merged: &mut Vec<ImageInfo>, image: ImageInfo) {
    let Some(existing) = merged.iter_mut().find(|m| m.id == image.id) else {
        merged.push(image);
        return;
    };
    for tag in image.repo_tags {
        if !existing.repo_tags.contains(&tag) {
            existing.repo_tags.push(tag);
        }
    }
    for digest in image.repo_digests {
        if !existing.repo_digests.contains(&digest) {
            existing.repo_digests.push(digest);
        }
    }
    existing.pinned |= image.pinned;
}
