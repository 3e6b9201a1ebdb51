//! The image index: a redb database in the store root. An image becomes visible only
//! when the one write transaction that records it commits; everything on disk that
//! no committed image references is garbage (see `gc`).

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::types::{ImageConfig, ImageInfo};

/// Image id (config digest) → JSON `ImageRecord`.
const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
/// Repo tag or repo digest → image id.
const NAMES: TableDefinition<&str, &str> = TableDefinition::new("names");

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LayerRecord {
    /// Digest of the compressed blob.
    pub digest: String,
    /// Size of the compressed blob.
    pub size: u64,
    /// Digest of the uncompressed tar (`rootfs.diff_ids`).
    pub diff_id: String,
    /// Chain id: names the unpacked directory.
    pub chain_id: String,
}

/// An image as the index stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ImageRecord {
    /// Config digest.
    pub id: String,
    /// Manifests and indexes kept for the image (every repo digest's target).
    pub manifests: BTreeSet<String>,
    /// Layers, bottom first.
    pub layers: Vec<LayerRecord>,
    /// Size as containerd reports it.
    pub size: u64,
    /// The image config's runtime part.
    pub config: ImageConfig,
    /// Normalized tags.
    pub repo_tags: BTreeSet<String>,
    /// `repo@digest` names.
    pub repo_digests: BTreeSet<String>,
}

impl ImageRecord {
    /// The CRI view of the record.
    pub(crate) fn info(&self) -> ImageInfo {
        ImageInfo {
            id: self.id.clone(),
            repo_tags: self.repo_tags.iter().cloned().collect(),
            repo_digests: self.repo_digests.iter().cloned().collect(),
            size: self.size,
            config: self.config.clone(),
            pinned: false,
        }
    }
}

/// Content every committed image references.
#[derive(Debug, Default)]
pub(crate) struct Referenced {
    /// Blob digests.
    pub blobs: HashSet<String>,
    /// Chain ids.
    pub layers: HashSet<String>,
}

/// The redb-backed index.
pub(crate) struct Index {
    db: Database,
}

/// A database failure: a disk error stays an I/O error, unreadable content is data
/// loss, anything else is an internal failure of the index.
fn db_error(e: impl Into<redb::Error>) -> Error {
    const INDEX: &str = "image index";
    match e.into() {
        redb::Error::Io(source) => Error::io(INDEX, source),
        redb::Error::Corrupted(message) => Error::DataLoss {
            what: INDEX.to_string(),
            message: format!("corrupted: {message}"),
        },
        other => Error::internal(INDEX, "the database", other),
    }
}

fn decode(id: &str, bytes: &[u8]) -> Result<ImageRecord> {
    serde_json::from_slice(bytes).map_err(|e| Error::DataLoss {
        what: format!("image index record {id}"),
        message: e.to_string(),
    })
}

fn encode(record: &ImageRecord) -> Result<Vec<u8>> {
    serde_json::to_vec(record).map_err(|e| Error::internal("image index", "encoding a record", e))
}

impl Index {
    /// Opens (or creates) the database at `path`; redb repairs it after a crash and
    /// refuses a second opener.
    pub(crate) fn open(path: &Path) -> Result<Index> {
        let db = Database::create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::FailedPrecondition(format!(
                "image index {} is in use by another berth",
                path.display()
            )),
            other => db_error(other),
        })?;
        let txn = db.begin_write().map_err(db_error)?;
        txn.open_table(IMAGES).map_err(db_error)?;
        txn.open_table(NAMES).map_err(db_error)?;
        txn.commit().map_err(db_error)?;
        Ok(Index { db })
    }

    /// The image named by exact repo tag or repo digest.
    pub(crate) fn by_name(&self, name: &str) -> Result<Option<ImageRecord>> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let names = txn.open_table(NAMES).map_err(db_error)?;
        let Some(id) = names.get(name).map_err(db_error)? else {
            return Ok(None);
        };
        let id = id.value().to_string();
        drop(names);
        drop(txn);
        self.get(&id)
    }

    /// The image with id `id`.
    pub(crate) fn get(&self, id: &str) -> Result<Option<ImageRecord>> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let images = txn.open_table(IMAGES).map_err(db_error)?;
        let found = images.get(id).map_err(db_error)?;
        found.map(|v| decode(id, v.value())).transpose()
    }

    /// Every image, in id order.
    pub(crate) fn all(&self) -> Result<Vec<ImageRecord>> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let images = txn.open_table(IMAGES).map_err(db_error)?;
        let mut out = Vec::new();
        for entry in images.iter().map_err(db_error)? {
            let (k, v) = entry.map_err(db_error)?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Records a pulled image in one transaction: merges it with an existing image of
    /// the same id, points `tag` at it (taking the tag from any other image) and adds
    /// `repo_digest`. Returns the record as committed.
    pub(crate) fn commit_pull(
        &self,
        mut record: ImageRecord,
        tag: Option<&str>,
        repo_digest: &str,
    ) -> Result<ImageRecord> {
        let txn = self.db.begin_write().map_err(db_error)?;
        {
            let mut images = txn.open_table(IMAGES).map_err(db_error)?;
            let mut names = txn.open_table(NAMES).map_err(db_error)?;
            let existing = images
                .get(record.id.as_str())
                .map_err(db_error)?
                .map(|v| v.value().to_vec());
            if let Some(bytes) = existing {
                let old = decode(&record.id, &bytes)?;
                record.manifests.extend(old.manifests);
                record.repo_tags.extend(old.repo_tags);
                record.repo_digests.extend(old.repo_digests);
                record.size = old.size;
            }
            if let Some(tag) = tag {
                let previous = names
                    .get(tag)
                    .map_err(db_error)?
                    .map(|v| v.value().to_string());
                if let Some(previous) = previous.filter(|p| *p != record.id) {
                    // The tag moved: the old image keeps its repo digests, as in containerd.
                    let bytes = images
                        .get(previous.as_str())
                        .map_err(db_error)?
                        .map(|v| v.value().to_vec());
                    if let Some(bytes) = bytes {
                        let mut old = decode(&previous, &bytes)?;
                        old.repo_tags.remove(tag);
                        images
                            .insert(previous.as_str(), encode(&old)?.as_slice())
                            .map_err(db_error)?;
                    }
                }
                names.insert(tag, record.id.as_str()).map_err(db_error)?;
                record.repo_tags.insert(tag.to_string());
            }
            names
                .insert(repo_digest, record.id.as_str())
                .map_err(db_error)?;
            record.repo_digests.insert(repo_digest.to_string());
            images
                .insert(record.id.as_str(), encode(&record)?.as_slice())
                .map_err(db_error)?;
        }
        txn.commit().map_err(db_error)?;
        Ok(record)
    }

    /// Removes image `id` and every name pointing at it; false when it was absent.
    pub(crate) fn remove(&self, id: &str) -> Result<bool> {
        let txn = self.db.begin_write().map_err(db_error)?;
        let removed = {
            let mut images = txn.open_table(IMAGES).map_err(db_error)?;
            let mut names = txn.open_table(NAMES).map_err(db_error)?;
            let removed = images
                .remove(id)
                .map_err(db_error)?
                .map(|v| v.value().to_vec());
            match removed {
                Some(bytes) => {
                    let record = decode(id, &bytes)?;
                    for name in record.repo_tags.iter().chain(&record.repo_digests) {
                        names.remove(name.as_str()).map_err(db_error)?;
                    }
                    true
                }
                None => false,
            }
        };
        txn.commit().map_err(db_error)?;
        Ok(removed)
    }

    /// Blobs and layers some image references.
    pub(crate) fn referenced(&self) -> Result<Referenced> {
        let mut out = Referenced::default();
        for record in self.all()? {
            out.blobs.extend(record.manifests.iter().cloned());
            out.blobs.insert(record.id.clone());
            for layer in &record.layers {
                out.blobs.insert(layer.digest.clone());
                out.layers.insert(layer.chain_id.clone());
            }
        }
        Ok(out)
    }
}
