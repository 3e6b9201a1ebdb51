//! berth's embedded image store: pulls images over the OCI distribution protocol,
//! keeps their content once per digest, and unpacks layers into directories the
//! youki backend stacks with overlayfs.
//!
//! # On disk (`<state_dir>/images`)
//! ```text
//! index.redb            images and their names; an image exists once its commit lands
//! blobs/sha256/<hex>    manifests, indexes and configs (verified)
//! layers/<hex>          unpacked layers by chain id (verified diff id); overlay lowerdirs
//! tmp/                  downloads, unpacks and trash in progress
//! ```
//! Compressed layer blobs are not kept: once a layer is unpacked its directory is the
//! content, and each is stored once however many images share it.
//!
//! # Crash safety
//! Content reaches `blobs/` and `layers/` only by an atomic rename from `tmp/` after
//! its digest checked out, and is flushed (`syncfs`) before the index references it;
//! the index commit (redb, fsynced) is the single point where a pulled image becomes
//! visible. A crash before it leaves only files in `tmp/` (deleted by `open`) and
//! unreferenced entries in `blobs/`/`layers/` (swept by `open`). Removal deletes the
//! index entry first, then sweeps: a crash between leaves garbage, never a dangling
//! image. `open` also drops any image whose content is missing.
//!
//! # Concurrency and deadlines
//! Pulls of the same reference with the same credentials share one run; a layer's
//! fetch (its download streamed into its unpack) is shared by chain id across all
//! pulls. At most `registries.max_concurrent_downloads` layers are fetched at once
//! over all pulls, each pull taking its permits in layer order. A pull
//! runs as its own task: when the caller's future is dropped (a gRPC deadline), the
//! pull carries on to completion (bounded by the registry timeouts) and a retry joins
//! it instead of starting over. Layer fetches nobody waits for any more are
//! cancelled and their temp directories removed. Leases keep the sweep away from content
//! an in-flight pull relies on.

mod auth;
mod coalesce;
mod config;
mod digest;
mod fetch;
mod gc;
mod index;
mod layer;
mod layout;
mod lookup;
mod manifest;
mod progress;
mod pull;
mod reference;
mod registry;
mod unpack;
mod unpack_fs;
pub(crate) mod usage;
mod zstd;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::FutureExt;
use tracing::Instrument;

pub use config::RegistryConfig;
pub(crate) use digest::share_error;
pub use progress::{totals as pull_totals, PullTotals, PROGRESS_INTERVAL};
pub use reference::{normalize, Reference};

use crate::error::{Error, Result};
use crate::types::{FsUsage, ImageInfo, PullRequest};
use coalesce::Coalescer;
use gc::Leases;
use index::Index;
use layout::Layout;
use manifest::Platform;

/// The image store. Cheap to share behind an `Arc`; every method is safe to call
/// concurrently.
pub struct ImageStore {
    inner: Arc<Inner>,
}

/// State shared with running pulls.
pub(crate) struct Inner {
    layout: Layout,
    index: Index,
    registries: RegistryConfig,
    platform: Platform,
    leases: Arc<Leases>,
    pulls: Coalescer<ImageInfo>,
    unpacks: Coalescer<()>,
    /// Permits for layers being fetched, `registries.max_concurrent_downloads` of
    /// them over all pulls: a pull takes them in layer order.
    downloads: Arc<tokio::sync::Semaphore>,
}

impl ImageStore {
    /// Opens the store at `root` (created if missing), recovering from a crash:
    /// partial downloads and unpacks are deleted, unreferenced content is swept, and
    /// images whose content is missing are dropped. Fails with `FailedPrecondition`
    /// when another process has the store open, `InvalidSpec` for a bad `registries`.
    pub fn open(root: &Path, registries: RegistryConfig) -> Result<ImageStore> {
        registries.validate()?;
        let layout = Layout::create(root)?;
        let index = Index::open(&layout.index())?;
        let leftovers = gc::clean_tmp(&layout)?;
        let downloads = Arc::new(tokio::sync::Semaphore::new(
            registries.max_concurrent_downloads,
        ));
        let inner = Inner {
            layout,
            index,
            registries,
            downloads,
            platform: Platform::host(),
            leases: Arc::default(),
            pulls: Coalescer::default(),
            unpacks: Coalescer::default(),
        };
        let dropped = inner.drop_incomplete()?;
        let swept = gc::sweep(&inner.layout, &inner.index, &inner.leases)?;
        if leftovers + dropped + swept > 0 {
            tracing::info!(
                root = %root.display(),
                temp_files = leftovers,
                incomplete_images = dropped,
                unreferenced = swept,
                "image store recovered"
            );
        }
        Ok(ImageStore {
            inner: Arc::new(inner),
        })
    }

    /// Pulls `request.reference` (or finds it current) and describes it.
    pub async fn pull(&self, request: &PullRequest) -> Result<ImageInfo> {
        let image = normalize(&request.reference)?;
        let credential_id = request
            .auth
            .as_ref()
            .map(|a| digest::sha256(&serde_json::to_vec(a).unwrap_or_default()))
            .unwrap_or_default();
        let key = format!("{image} {credential_id}");
        let (inner, auth) = (self.inner.clone(), request.auth.clone());
        self.inner
            .pulls
            .run(&key, true, move || {
                // The pull runs detached (it outlives a caller that gives up), but
                // belongs to the trace of the call that started it.
                pull::pull(inner, image, auth)
                    .instrument(tracing::Span::current())
                    .boxed()
            })
            .await
    }

    /// The image named by a reference (tag or repo digest, normalized), its id
    /// (`sha256:…`), or an unambiguous id prefix; `None` when absent.
    pub fn status(&self, reference: &str) -> Result<Option<ImageInfo>> {
        Ok(lookup::find(&self.inner.index, reference)?.map(|r| r.info()))
    }

    /// Every image.
    pub fn list(&self) -> Result<Vec<ImageInfo>> {
        Ok(self.inner.index.all()?.iter().map(|r| r.info()).collect())
    }

    /// Removes the image `reference` names, with all its tags and digests, and the
    /// content no other image uses. Removing an absent image succeeds.
    pub fn remove(&self, reference: &str) -> Result<()> {
        if let Some(record) = lookup::find(&self.inner.index, reference)? {
            self.inner.index.remove(&record.id)?;
            gc::sweep(&self.inner.layout, &self.inner.index, &self.inner.leases)?;
        }
        Ok(())
    }

    /// What the store's files use; the mountpoint is the store root.
    pub fn fs_info(&self) -> Result<FsUsage> {
        usage::usage(&self.inner.layout.root)
    }

    /// The unpacked layer directories of `image`, topmost first: overlayfs lowerdirs.
    pub fn layer_dirs(&self, image: &str) -> Result<Vec<PathBuf>> {
        let record = lookup::find(&self.inner.index, image)?
            .ok_or_else(|| Error::not_found("image", image))?;
        Ok(record
            .layers
            .iter()
            .rev()
            .map(|l| self.inner.layout.layer(&l.chain_id))
            .collect())
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.inner.layout.root
    }

    /// Records an image of no layers named `reference`, as a pull would (for unit
    /// tests of what uses images); returns its id.
    #[cfg(test)]
    pub(crate) fn add_empty_image(&self, reference: &str) -> Result<String> {
        let image = normalize(reference)?;
        let id = digest::sha256(reference.as_bytes());
        let record = index::ImageRecord {
            id: id.clone(),
            manifests: Default::default(),
            layers: Vec::new(),
            size: 0,
            config: Default::default(),
            repo_tags: Default::default(),
            repo_digests: Default::default(),
        };
        let tag = image.tag().map(|_| image.to_string());
        let repo_digest = image.with_digest(&id);
        self.inner
            .index
            .commit_pull(record, tag.as_deref(), &repo_digest)?;
        Ok(id)
    }
}

impl Inner {
    /// Drops images whose manifests, config or layers are missing; returns how many.
    fn drop_incomplete(&self) -> Result<usize> {
        let mut dropped = 0;
        for record in self.index.all()? {
            let missing = record
                .manifests
                .iter()
                .chain(std::iter::once(&record.id))
                .map(|d| self.layout.blob(d))
                .chain(record.layers.iter().map(|l| self.layout.layer(&l.chain_id)))
                .find(|p| !p.exists());
            if let Some(path) = missing {
                tracing::warn!(image = %record.id, missing = %path.display(), "dropping an image whose content is gone");
                self.index.remove(&record.id)?;
                dropped += 1;
            }
        }
        Ok(dropped)
    }
}
