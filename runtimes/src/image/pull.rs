//! One pull, start to commit.
//!
//! 1. Resolve the reference on the first endpoint that answers (mirrors, then the
//!    registry); pick the host platform's manifest from an index.
//! 2. Fetch and verify the config; check platform and `rootfs.diff_ids`.
//! 3. Lease every blob and layer the image will reference.
//! 4. Fetch the missing layers, `registries.max_concurrent_downloads` at once in
//!    layer order, each streamed through its decompressor into a temp directory as it
//!    downloads (coalesced by chain id across pulls), checking its digest and diff id
//!    before it is renamed into place.
//! 5. Store manifests and config, `syncfs`, and commit the index in one transaction:
//!    only now is the image visible.
//!
//! Any failure drops the layers still being fetched (their temp directories go with
//! them), releases the leases and sweeps what no image references, so a failed pull
//! keeps nothing.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::sync::OwnedSemaphorePermit;

use super::digest::{chain_ids, sha256, verify};
use super::fetch::write_blob;
use super::gc::{blob_key, layer_key, sweep};
use super::index::{ImageRecord, LayerRecord};
use super::layer::{fetch_layer, LayerJob};
use super::manifest::{self, ConfigFile, Descriptor, Document};
use super::progress::{reporting, Progress};
use super::reference::{validate_digest, Reference};
use super::registry::{self, Source};
use super::unpack_fs::syncfs;
use super::Inner;
use crate::error::{Error, IoContext, Result};
use crate::types::{ImageInfo, RegistryAuth};

/// What the registry says the image is.
struct Resolved {
    source: Arc<Source>,
    /// Manifests to keep: the one the reference names, then the platform's.
    manifests: Vec<(String, Bytes)>,
    config: Descriptor,
    config_bytes: Vec<u8>,
    config_file: ConfigFile,
    layers: Vec<Descriptor>,
}

/// Pulls `image` and commits it to the index.
#[tracing::instrument(
    level = "debug",
    name = "image.pull",
    skip_all,
    fields(otel.name = "pull image", image = %image)
)]
pub(crate) async fn pull(
    inner: Arc<Inner>,
    image: Reference,
    auth: Option<RegistryAuth>,
) -> Result<ImageInfo> {
    let resolved = resolve(&inner, &image, auth.as_ref()).await?;
    let diff_ids = resolved.config_file.rootfs.diff_ids.clone();
    let chain = chain_ids(&diff_ids);
    let mut keys: Vec<String> = resolved
        .manifests
        .iter()
        .map(|(d, _)| blob_key(d))
        .collect();
    keys.push(blob_key(&resolved.config.digest));
    keys.extend(chain.iter().map(|c| layer_key(c)));
    let lease = inner.leases.acquire(keys);

    let progress = Arc::new(Progress::new(
        resolved.layers.len(),
        resolved.layers.iter().map(|l| l.size).sum(),
    ));
    let name = image.to_string();
    let stored = reporting(
        &name,
        &progress,
        store(&inner, &image, &resolved, &diff_ids, &chain, &progress),
    )
    .await;
    let outcome = match stored {
        Ok(()) => {
            let inner = inner.clone();
            let image = image.clone();
            blocking(move || commit(&inner, &image, &resolved, diff_ids, chain)).await
        }
        Err(e) => Err(e),
    };
    drop(lease);
    match outcome {
        Ok(record) => Ok(record.info()),
        Err(e) => {
            let swept = {
                let inner = inner.clone();
                blocking(move || sweep(&inner.layout, &inner.index, &inner.leases)).await
            };
            if let Err(sweep_error) = swept {
                tracing::warn!(image = %image, error = %sweep_error, "cleaning up after a failed pull");
            }
            Err(e)
        }
    }
}

/// Runs disk-bound work (fsync, redb commits, deletions) off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal("image store", "blocking task failed", e))?
}

/// Stores manifests and config, flushes the filesystem, and commits the image: the
/// one step after which it is visible.
fn commit(
    inner: &Inner,
    image: &Reference,
    resolved: &Resolved,
    diff_ids: Vec<String>,
    chain: Vec<String>,
) -> Result<ImageRecord> {
    let layout = &inner.layout;
    for (digest, bytes) in &resolved.manifests {
        write_blob(layout, digest, bytes)?;
    }
    write_blob(layout, &resolved.config.digest, &resolved.config_bytes)?;
    // One flush of the filesystem makes every blob and layer durable before the
    // index (which fsyncs its own commit) may reference them.
    syncfs(&layout.root).io_context(|| format!("syncing {}", layout.root.display()))?;
    let record = ImageRecord {
        id: resolved.config.digest.clone(),
        manifests: resolved.manifests.iter().map(|(d, _)| d.clone()).collect(),
        layers: resolved
            .layers
            .iter()
            .zip(diff_ids.into_iter().zip(chain))
            .map(|(l, (diff_id, chain_id))| LayerRecord {
                digest: l.digest.clone(),
                size: l.size,
                diff_id,
                chain_id,
            })
            .collect(),
        size: size(resolved),
        config: resolved.config_file.image_config(),
        repo_tags: BTreeSet::new(),
        repo_digests: BTreeSet::new(),
    };
    let tag = image.tag().map(|_| image.to_string());
    let repo_digest = image.with_digest(&resolved.manifests[0].0);
    inner
        .index
        .commit_pull(record, tag.as_deref(), &repo_digest)
}

/// containerd's `Image.Size`: every descriptor walked for the platform — the
/// manifest(s), the config and the compressed layers.
fn size(resolved: &Resolved) -> u64 {
    let manifests: u64 = resolved.manifests.iter().map(|(_, b)| b.len() as u64).sum();
    manifests + resolved.config.size + resolved.layers.iter().map(|l| l.size).sum::<u64>()
}

async fn resolve(
    inner: &Inner,
    image: &Reference,
    auth: Option<&RegistryAuth>,
) -> Result<Resolved> {
    let name = image.to_string();
    let (source, top) = registry::resolve(&inner.registries, image, auth).await?;
    let top_digest = match image.digest() {
        Some(digest) => {
            verify(&format!("manifest of {name}"), &top, digest)?;
            digest.to_string()
        }
        None => sha256(&top),
    };
    let mut manifests = vec![(top_digest, top.clone())];
    let (config, layers) = image_manifest(inner, &source, &name, &top, &mut manifests).await?;
    check_digest(&name, &config.digest)?;
    for layer in &layers {
        check_digest(&name, &layer.digest)?;
        if !manifest::is_layer(&layer.media_type) {
            return Err(Error::InvalidSpec(format!(
                "{name} is not a container image: it has a layer of type {:?}",
                layer.media_type
            )));
        }
    }
    let config_bytes = match std::fs::read(inner.layout.blob(&config.digest)) {
        Ok(bytes) => bytes,
        Err(_) => source.blob_bytes(&config).await?,
    };
    verify(
        &format!("image config of {name}"),
        &config_bytes,
        &config.digest,
    )?;
    let config_file = ConfigFile::parse(&name, &config_bytes)?;
    let platform = config_file.platform();
    if !inner.platform.runs(&platform) {
        return Err(manifest::wrong_platform(
            &name,
            &platform.to_string(),
            &inner.platform,
        ));
    }
    let diff_ids = &config_file.rootfs.diff_ids;
    if diff_ids.len() != layers.len() {
        return Err(Error::DataLoss {
            what: format!("image config {} of {name}", config.digest),
            message: format!(
                "lists {} diff ids for {} layers",
                diff_ids.len(),
                layers.len()
            ),
        });
    }
    for diff_id in diff_ids {
        check_digest(&name, diff_id)?;
    }
    Ok(Resolved {
        source: Arc::new(source),
        manifests,
        config,
        config_bytes,
        config_file,
        layers,
    })
}

/// The config and layers of the image manifest `top` is, or of the one the index
/// `top` lists for this host's platform (fetched, verified and added to `manifests`).
async fn image_manifest(
    inner: &Inner,
    source: &Source,
    name: &str,
    top: &Bytes,
    manifests: &mut Vec<(String, Bytes)>,
) -> Result<(Descriptor, Vec<Descriptor>)> {
    let entries = match manifest::parse(name, top)? {
        Document::Image { config, layers } => return Ok((config, layers)),
        Document::Index(entries) => entries,
    };
    let entry = manifest::select(name, &entries, &inner.platform)?;
    check_digest(name, &entry.digest)?;
    let bytes = source.manifest(Some(&entry.digest)).await?;
    verify(&format!("manifest of {name}"), &bytes, &entry.digest)?;
    manifests.push((entry.digest.clone(), bytes.clone()));
    match manifest::parse(name, &bytes)? {
        Document::Image { config, layers } => Ok((config, layers)),
        Document::Index(_) => Err(Error::InvalidSpec(format!(
            "image {name}: an index inside an index is not supported"
        ))),
    }
}

/// Digests become file names: only well-formed sha256 digests are accepted.
fn check_digest(image: &str, digest: &str) -> Result<()> {
    validate_digest(digest).map_err(|why| Error::DataLoss {
        what: format!("manifest of {image}"),
        message: why,
    })
}

/// Aborts a spawned layer fetch when the pull that started it goes away.
struct AbortOnDrop(tokio::task::JoinHandle<Result<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Fetches and unpacks every missing layer, each in its own task (coalesced by chain
/// id across pulls) once it holds one of the store's download permits; the permits
/// go to the layers in order, so the bottom layers finish first and a layer waiting
/// on its parents (a hard link into them) only ever waits on layers that hold
/// permits themselves. The first failure fails the pull and drops the others.
async fn store(
    inner: &Arc<Inner>,
    image: &Reference,
    r: &Resolved,
    diff_ids: &[String],
    chain: &[String],
    progress: &Arc<Progress>,
) -> Result<()> {
    let layout = &inner.layout;
    let name = image.to_string();
    let mut waiting: VecDeque<usize> = VecDeque::new();
    for (i, (layer, chain_id)) in r.layers.iter().zip(chain).enumerate() {
        if layout.layer(chain_id).exists() {
            progress.layer_done(layer.size);
        } else {
            waiting.push_back(i);
        }
    }
    let mut fetches = FuturesUnordered::new();
    // The next layer's place in the semaphore's queue, kept across loop turns so a
    // finished fetch does not cost it its turn.
    let mut permit: Option<BoxFuture<'static, _>> = None;
    loop {
        if permit.is_none() && !waiting.is_empty() {
            permit = Some(inner.downloads.clone().acquire_owned().boxed());
        }
        if permit.is_none() && fetches.is_empty() {
            return Ok(());
        }
        tokio::select! {
            Some(fetched) = fetches.next(), if !fetches.is_empty() => {
                fetched?;
                progress.layer_done(0);
            }
            granted = async { permit.as_mut().expect("guarded").await }, if permit.is_some() => {
                permit = None;
                let granted: OwnedSemaphorePermit = granted
                    .map_err(|e| Error::internal("image store", "download permits closed", e))?;
                let Some(i) = waiting.pop_front() else {
                    continue;
                };
                let job = layer_job(inner, &name, r, diff_ids, chain, progress, i);
                let inner2 = inner.clone();
                let shared = inner
                    .unpacks
                    .run(&chain[i], false, move || fetch_layer(inner2, job).boxed());
                // The permit goes with the task: held until this pull no longer waits
                // for the layer (done, failed, or the pull dropped).
                let mut task = AbortOnDrop(tokio::spawn(async move {
                    let _permit = granted;
                    shared.await
                }));
                fetches.push(async move {
                    (&mut task.0)
                        .await
                        .map_err(|e| Error::internal("image store", "layer task failed", e))?
                });
            }
        }
    }
}

/// What fetching layer `i` of `r` takes.
fn layer_job(
    inner: &Inner,
    name: &str,
    r: &Resolved,
    diff_ids: &[String],
    chain: &[String],
    progress: &Arc<Progress>,
    i: usize,
) -> LayerJob {
    let layer = &r.layers[i];
    LayerJob {
        source: r.source.clone(),
        desc: layer.clone(),
        diff_id: diff_ids[i].clone(),
        chain_id: chain[i].clone(),
        lowers: chain[..i]
            .iter()
            .rev()
            .map(|c| inner.layout.layer(c))
            .collect(),
        image: name.to_string(),
        progress: progress.clone(),
        spans: (
            tracing::debug_span!(
                "image.layer.download",
                otel.name = "download layer",
                digest = %layer.digest,
                size = layer.size,
            ),
            tracing::debug_span!(
                "image.layer.unpack",
                otel.name = "unpack layer",
                digest = %layer.digest,
            ),
        ),
    }
}
