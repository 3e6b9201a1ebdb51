//! Turning a layer blob into `layers/<chain id>` in one pass: the download streams
//! the blob ([`stream_blob`]) to a blocking thread that decompresses it and unpacks
//! the tar into a temp directory as it arrives, hashing the tar for its diff id; the
//! directory is renamed into place under the lease lock (so a concurrent sweep sees
//! either no layer or a leased one) only once the download verified the blob's digest
//! and the diff id is the one the config promises. Up to
//! `registries.max_concurrent_downloads` layers run so at once (the pull hands out
//! the permits); the blob never touches the disk.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{Instrument, Span};

use super::fetch::{stream_blob, BlobReader};
use super::manifest::Descriptor;
use super::progress::Progress;
use super::registry::Source;
use super::unpack::{unpack, Lowers};
use super::Inner;
use crate::error::{Error, IoContext, Result};

/// Chunks of a blob on their way from its download to its unpack, at most: with the
/// decompressor's and tar reader's buffers, what a layer being pulled holds in
/// memory (a slow unpack slows the download down instead).
const IN_FLIGHT: usize = 16;

/// How often an unpack waiting for its parent layers (a hard link into them) looks.
const LOWERS_POLL: Duration = Duration::from_millis(20);

/// One layer to fetch and unpack.
pub(crate) struct LayerJob {
    /// Where the blob comes from.
    pub source: Arc<Source>,
    /// The blob: digest and size.
    pub desc: Descriptor,
    /// The diff id the image config promises.
    pub diff_id: String,
    /// Names the result.
    pub chain_id: String,
    /// Parent layers, topmost first (unpacked or being unpacked).
    pub lowers: Vec<PathBuf>,
    /// The image being pulled, for messages.
    pub image: String,
    /// The pull's progress (a download another pull started counts in that one's).
    pub progress: Arc<Progress>,
    /// The download's span and the unpack's.
    pub spans: (Span, Span),
}

/// Sets the flag when dropped: tells the blocking unpack its waiters are gone.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Fetches and unpacks `job` unless its layer exists already.
pub(crate) async fn fetch_layer(inner: Arc<Inner>, job: LayerJob) -> Result<()> {
    if inner.layout.layer(&job.chain_id).exists() {
        return Ok(());
    }
    let cancel = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(cancel.clone());
    let (tx, rx) = mpsc::channel(IN_FLIGHT);
    let job = Arc::new(job);
    let unpacking = {
        let (inner, job, cancel) = (inner.clone(), job.clone(), cancel.clone());
        tokio::task::spawn_blocking(move || {
            job.spans
                .1
                .in_scope(|| unpack_blocking(&inner, &job, BlobReader::new(rx), &cancel))
        })
    };
    let streamed = stream_blob(&job.source, &job.desc, &job.progress, tx)
        .instrument(job.spans.0.clone())
        .await;
    let unpacked = unpacking
        .await
        .map_err(|e| Error::internal("image store", "unpack task failed", e))?;
    // A failed download names the blob and why; its unpack only saw the stream end.
    streamed?;
    unpacked
}

fn unpack_blocking(
    inner: &Inner,
    job: &LayerJob,
    mut blob: BlobReader,
    cancel: &AtomicBool,
) -> Result<()> {
    let layout = &inner.layout;
    let dest = layout.layer(&job.chain_id);
    let tmp_dir = layout.tmp();
    let work = tempfile::Builder::new()
        .prefix("unpack-")
        .tempdir_in(&tmp_dir)
        .io_context(|| format!("creating a temp directory in {}", tmp_dir.display()))?;
    // The layer root is 0755 unless the tar says otherwise (tempdirs start at 0700).
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755))
        .io_context(|| format!("preparing {}", work.path().display()))?;
    let what = format!("layer {} of {}", job.desc.digest, job.image);
    let wait = || wait_for(&job.lowers, cancel, &what);
    let lowers = Lowers {
        dirs: &job.lowers,
        wait: &wait,
    };
    let diff_id = unpack(&what, &mut blob, work.path(), &lowers, cancel)?;
    // Only a blob that arrived whole and verified is kept.
    blob.finish().map_err(|e| Error::DataLoss {
        what: what.clone(),
        message: format!("unreadable layer: {e}"),
    })?;
    if diff_id != job.diff_id {
        return Err(Error::DataLoss {
            what,
            message: format!(
                "uncompressed content has digest {diff_id}, the image config says {}",
                job.diff_id
            ),
        });
    }
    let _held = inner.leases.lock();
    if cancel.load(Ordering::Relaxed) {
        return Err(cancelled(&what));
    }
    if dest.exists() {
        // Another pull's unpack of the same layer got there first.
        return Ok(());
    }
    fs::rename(work.path(), &dest).io_context(|| format!("moving {what} to {}", dest.display()))?;
    // Renamed away: nothing is left for the guard to delete.
    let _ = work.keep();
    Ok(())
}

/// Waits until every parent layer `dirs` is in place (they unpack in parallel with
/// this one); only a hard link into them needs it. Each parent is in place or held
/// a download permit before this layer got its own (permits go in layer order), so
/// the wait ends however few permits there are.
fn wait_for(dirs: &[PathBuf], cancel: &AtomicBool, what: &str) -> Result<()> {
    while !dirs.iter().all(|d| d.exists()) {
        if cancel.load(Ordering::Relaxed) {
            return Err(cancelled(what));
        }
        std::thread::sleep(LOWERS_POLL);
    }
    Ok(())
}

fn cancelled(what: &str) -> Error {
    Error::backend("image store", format!("unpacking {what} was cancelled"))
}
