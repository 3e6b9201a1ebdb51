//! Where the store keeps things under its root:
//!
//! ```text
//! <root>/index.redb            the image index (the only place an image is visible)
//! <root>/blobs/sha256/<hex>    verified manifests, indexes and configs
//! <root>/layers/<hex>          unpacked layers by chain id, each an overlayfs lowerdir
//! <root>/tmp/                  downloads and unpacks in progress; emptied by `open`
//! ```
//! Files reach `blobs/` and `layers/` only by rename from `tmp/` after verification.

use std::path::{Path, PathBuf};

use super::digest::hex_of;
use crate::error::{IoContext, Result};

/// The paths of one store root.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// The store root.
    pub root: PathBuf,
}

impl Layout {
    /// Creates the directories under `root`.
    pub(crate) fn create(root: &Path) -> Result<Layout> {
        let layout = Layout {
            root: root.to_path_buf(),
        };
        for dir in [layout.blobs(), layout.layers(), layout.tmp()] {
            std::fs::create_dir_all(&dir).io_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(layout)
    }

    /// The index database.
    pub(crate) fn index(&self) -> PathBuf {
        self.root.join("index.redb")
    }

    /// The directory of sha256 blobs.
    pub(crate) fn blobs(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// The directory of unpacked layers.
    pub(crate) fn layers(&self) -> PathBuf {
        self.root.join("layers")
    }

    /// Scratch space for work in progress.
    pub(crate) fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Where blob `digest` lives.
    pub(crate) fn blob(&self, digest: &str) -> PathBuf {
        self.blobs().join(hex_of(digest))
    }

    /// Where the layer with chain id `chain_id` is unpacked.
    pub(crate) fn layer(&self, chain_id: &str) -> PathBuf {
        self.layers().join(hex_of(chain_id))
    }
}
