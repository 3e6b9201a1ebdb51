//! Getting content: small documents (manifests, configs) are written into `blobs/`
//! once verified; layer blobs are never stored: each is streamed, as it arrives, to
//! the thread unpacking it (through a channel of a few chunks: what a slow unpack
//! holds back is the download, not memory), hashed on the way and checked against
//! the descriptor's size and digest at its end. The unpack keeps its result only
//! once the download says the whole blob was right ([`Chunk::Verified`]).

use std::io::{BufRead, Read, Write};

use bytes::{Buf, Bytes};
use futures::StreamExt;
use tokio::sync::mpsc;

use super::digest::verify;
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

/// What a layer's download hands its unpack, in order.
pub(crate) enum Chunk {
    /// The next bytes of the blob.
    Data(Bytes),
    /// The blob ended with the size and digest the manifest declares (sent after the
    /// last bytes; a download that fails ends without it).
    Verified,
}

/// Streams layer blob `desc` from `source` into `tx` as it arrives, checking it
/// against the descriptor's size as it comes and digest at its end; sends
/// [`Chunk::Verified`] after the last bytes when both are right. A failure ends the
/// stream without it (dropping `tx`), so the unpack reading it fails too and keeps
/// nothing. False when the unpack stopped reading first (it failed: its error is
/// the pull's).
///
/// The digest is the one check not made here: [`Source::blob_stream`]'s stream
/// (oci-client's verifying stream) hashes the blob as it passes and ends with an
/// error, DATA_LOSS, when it is not `desc.digest`; hashing it a second time here
/// cost a third of a large pull's CPU.
pub(crate) async fn stream_blob(
    source: &Source,
    desc: &Descriptor,
    progress: &Progress,
    tx: mpsc::Sender<Chunk>,
) -> Result<bool> {
    let mut stream = source.blob_stream(desc).await?;
    let mut len = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        len += chunk.len() as u64;
        if len > desc.size {
            return Err(too_long(&desc.digest, desc.size));
        }
        progress.downloaded(chunk.len() as u64);
        if tx.send(Chunk::Data(chunk)).await.is_err() {
            return Ok(false);
        }
    }
    if len != desc.size {
        return Err(Error::DataLoss {
            what: format!("blob {}", desc.digest),
            message: format!(
                "{} sent {len} bytes, the manifest declares {}",
                source.endpoint.describe(),
                desc.size
            ),
        });
    }
    Ok(tx.send(Chunk::Verified).await.is_ok())
}

/// The blob a download streams, read on a blocking thread (the unpack's).
pub(crate) struct BlobReader {
    rx: mpsc::Receiver<Chunk>,
    chunk: Bytes,
    verified: bool,
}

impl BlobReader {
    pub(crate) fn new(rx: mpsc::Receiver<Chunk>) -> Self {
        BlobReader {
            rx,
            chunk: Bytes::new(),
            verified: false,
        }
    }

    /// Reads what is left of the blob (a decompressor may stop before its end): Ok
    /// once all of it arrived and it was verified.
    pub(crate) fn finish(&mut self) -> std::io::Result<()> {
        std::io::copy(self, &mut std::io::sink()).map(drop)
    }
}

impl BufRead for BlobReader {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.chunk.is_empty() {
            if self.verified {
                break;
            }
            match self.rx.blocking_recv() {
                Some(Chunk::Data(bytes)) => self.chunk = bytes,
                Some(Chunk::Verified) => self.verified = true,
                None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the layer's download stopped",
                    ))
                }
            }
        }
        Ok(&self.chunk)
    }

    fn consume(&mut self, amount: usize) {
        self.chunk.advance(amount.min(self.chunk.len()));
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let chunk = self.fill_buf()?;
        let n = buf.len().min(chunk.len());
        buf[..n].copy_from_slice(&chunk[..n]);
        self.consume(n);
        Ok(n)
    }
}
