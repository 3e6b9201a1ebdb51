//! Leases and mark-and-sweep garbage collection of blobs and unpacked layers.
//!
//! A pull leases every blob and layer it will reference *before* it checks whether
//! they exist, and holds the leases until its index commit; the sweep runs under the
//! same lock, so it never deletes what an in-flight pull relies on. Anything neither
//! referenced by a committed image nor leased is garbage: the sweep runs at `open`,
//! after every `remove`, and after every failed pull.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use super::index::Index;
use super::layout::Layout;
use crate::error::{IoContext, Result};

/// Counted leases on blobs (`blob <digest>`) and layers (`layer <chain id>`).
#[derive(Default)]
pub(crate) struct Leases {
    held: Mutex<HashMap<String, usize>>,
}

/// The lease key of blob `digest`.
pub(crate) fn blob_key(digest: &str) -> String {
    format!("blob {digest}")
}

/// The lease key of the layer with `chain_id`.
pub(crate) fn layer_key(chain_id: &str) -> String {
    format!("layer {chain_id}")
}

impl Leases {
    /// The lease table, locked: hold it to commit content or to sweep.
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Leases `keys` until the returned guard drops.
    pub(crate) fn acquire(self: &Arc<Self>, keys: Vec<String>) -> Lease {
        let mut held = self.lock();
        for key in &keys {
            *held.entry(key.clone()).or_default() += 1;
        }
        Lease {
            leases: self.clone(),
            keys,
        }
    }
}

/// Leases held by one pull; released on drop, also when the pull is cancelled.
pub(crate) struct Lease {
    leases: Arc<Leases>,
    keys: Vec<String>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut held = self.leases.lock();
        for key in &self.keys {
            if let Some(n) = held.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    held.remove(key);
                }
            }
        }
    }
}

/// Deletes every blob and layer that no committed image references and no pull
/// leases. Garbage is renamed into `tmp/` under the lock (cheap) and deleted after it
/// (a crash in between leaves it in `tmp/`, which `open` empties). Returns how many
/// entries went.
pub(crate) fn sweep(layout: &Layout, index: &Index, leases: &Leases) -> Result<usize> {
    let tmp = layout.tmp();
    let trash = tempfile::Builder::new()
        .prefix("trash-")
        .tempdir_in(&tmp)
        .io_context(|| format!("creating a trash directory in {}", tmp.display()))?;
    let mut moved = 0;
    {
        let held = leases.lock();
        let referenced = index.referenced()?;
        let garbage = |key: &str, wanted: bool| !wanted && !held.contains_key(key);
        for name in entries(&layout.blobs())? {
            let digest = format!("sha256:{name}");
            if garbage(&blob_key(&digest), referenced.blobs.contains(&digest)) {
                move_into(&layout.blobs().join(&name), trash.path(), &name)?;
                moved += 1;
            }
        }
        for name in entries(&layout.layers())? {
            let chain_id = format!("sha256:{name}");
            if garbage(&layer_key(&chain_id), referenced.layers.contains(&chain_id)) {
                move_into(
                    &layout.layers().join(&name),
                    trash.path(),
                    &format!("layer-{name}"),
                )?;
                moved += 1;
            }
        }
    }
    let path = trash.path().to_path_buf();
    trash
        .close()
        .io_context(|| format!("deleting garbage in {}", path.display()))?;
    if moved > 0 {
        tracing::debug!(entries = moved, "image store swept unreferenced content");
    }
    Ok(moved)
}

/// Empties `tmp/`: whatever is there belongs to no running operation when the store
/// opens (partial downloads, unpacks and trash of a crashed berth).
pub(crate) fn clean_tmp(layout: &Layout) -> Result<usize> {
    let tmp = layout.tmp();
    let mut removed = 0;
    for name in entries(&tmp)? {
        let path = tmp.join(&name);
        let is_dir = path.symlink_metadata().map(|m| m.is_dir()).unwrap_or(false);
        let result = if is_dir {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        result.io_context(|| format!("removing leftover {}", path.display()))?;
        removed += 1;
    }
    Ok(removed)
}

fn entries(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).io_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.io_context(|| format!("listing {}", dir.display()))?;
        out.push(entry.file_name().to_string_lossy().into_owned());
    }
    Ok(out)
}

fn move_into(from: &Path, trash: &Path, name: &str) -> Result<()> {
    std::fs::rename(from, trash.join(name))
        .io_context(|| format!("moving {} to the trash", from.display()))
}
