//! Getting content: small documents (manifests, configs) are written into `blobs/`
//! once verified; layer blobs are streamed to a temp file in `tmp/` while hashed and
//! checked against the descriptor's size and digest. A layer blob only lives until it
//! is unpacked: the temp file is deleted when its last user drops it, also when a
//! download fails or is cancelled.

use std::io::Write;
use std::sync::Arc;

use futures::StreamExt;
use tempfile::TempPath;
use tokio::io::AsyncWriteExt;

use super::digest::{verify, Hasher};
use super::layout::Layout;
use super::manifest::Descriptor;
use super::progress::Progress;
use super::registry::{too_long, Source};
use crate::error::{Error, IoContext, Result};

/// Stores small content already in memory and verified (a manifest or a config).
pub(crate) fn write_blob(layout: &Layout, digest: &str, bytes: &[u8]) -> Result<()> {
    let dest = layout.blob(digest);
    if dest.exists() {
        return Ok(());
    }
    verify("blob", bytes, digest)?;
    let tmp_dir = layout.tmp();
    let mut tmp = tempfile::Builder::new()
        .prefix("blob-")
        .tempfile_in(&tmp_dir)
        .io_context(|| format!("creating a temp file in {}", tmp_dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .io_context(|| format!("writing blob {digest}"))?;
    tmp.persist(&dest).map_err(|e| {
        Error::io(
            format!("storing blob {digest} at {}", dest.display()),
            e.error,
        )
    })?;
    Ok(())
}

/// Downloads layer blob `desc` from `source` into a verified temp file in `tmp/`.
pub(crate) async fn download(
    layout: Layout,
    source: Arc<Source>,
    desc: Descriptor,
    progress: Arc<Progress>,
) -> Result<Arc<TempPath>> {
    let tmp_dir = layout.tmp();
    let (file, tmp_path) = tempfile::Builder::new()
        .prefix("download-")
        .tempfile_in(&tmp_dir)
        .io_context(|| format!("creating a temp file in {}", tmp_dir.display()))?
        .into_parts();
    let mut file = tokio::fs::File::from_std(file);
    let context = || format!("writing blob {} to {}", desc.digest, tmp_path.display());
    let mut stream = source.blob_stream(&desc).await?;
    let mut hasher = Hasher::default();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        hasher.update(&chunk);
        if hasher.len() > desc.size {
            return Err(too_long(&desc.digest, desc.size));
        }
        file.write_all(&chunk).await.io_context(context)?;
        progress.downloaded(chunk.len() as u64);
    }
    file.flush().await.io_context(context)?;
    if hasher.len() != desc.size {
        return Err(Error::DataLoss {
            what: format!("blob {}", desc.digest),
            message: format!(
                "{} sent {} bytes, the manifest declares {}",
                source.endpoint.describe(),
                hasher.len(),
                desc.size
            ),
        });
    }
    let actual = hasher.finish();
    if actual != desc.digest {
        return Err(Error::DataLoss {
            what: format!("blob {}", desc.digest),
            message: format!(
                "{} sent content with digest {actual}",
                source.endpoint.describe()
            ),
        });
    }
    Ok(Arc::new(tmp_path))
}
