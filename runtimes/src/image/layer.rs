//! Turning a downloaded layer blob into `layers/<chain id>`: unpack into a temp
//! directory on a blocking thread, check the diff id, then rename into place under
//! the lease lock (so a concurrent sweep sees either no layer or a leased one).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tempfile::TempPath;

use super::unpack::unpack;
use super::Inner;
use crate::error::{Error, IoContext, Result};

/// One layer to unpack.
pub(crate) struct LayerJob {
    /// The verified compressed blob.
    pub blob: Arc<TempPath>,
    /// Its digest, for messages.
    pub digest: String,
    /// The diff id the image config promises.
    pub diff_id: String,
    /// Names the result.
    pub chain_id: String,
    /// Parent layers, topmost first.
    pub lowers: Vec<PathBuf>,
    /// The image being pulled, for messages.
    pub image: String,
}

/// Sets the flag when dropped: tells the blocking unpack its waiters are gone.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Unpacks `job` unless its layer exists already.
pub(crate) async fn unpack_layer(inner: Arc<Inner>, job: LayerJob) -> Result<()> {
    let cancel = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(cancel.clone());
    tokio::task::spawn_blocking(move || unpack_blocking(&inner, &job, &cancel))
        .await
        .map_err(|e| Error::internal("image store", "unpack task failed", e))?
}

fn unpack_blocking(inner: &Inner, job: &LayerJob, cancel: &AtomicBool) -> Result<()> {
    let layout = &inner.layout;
    let dest = layout.layer(&job.chain_id);
    if dest.exists() {
        return Ok(());
    }
    let tmp_dir = layout.tmp();
    let work = tempfile::Builder::new()
        .prefix("unpack-")
        .tempdir_in(&tmp_dir)
        .io_context(|| format!("creating a temp directory in {}", tmp_dir.display()))?;
    // The layer root is 0755 unless the tar says otherwise (tempdirs start at 0700).
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o755))
        .io_context(|| format!("preparing {}", work.path().display()))?;
    let what = format!("layer {} of {}", job.digest, job.image);
    let diff_id = unpack(&what, &job.blob, work.path(), &job.lowers, cancel)?;
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
        return Err(Error::backend(
            "image store",
            format!("unpacking {what} was cancelled"),
        ));
    }
    fs::rename(work.path(), &dest).io_context(|| format!("moving {what} to {}", dest.display()))?;
    // Renamed away: nothing is left for the guard to delete.
    let _ = work.keep();
    Ok(())
}
