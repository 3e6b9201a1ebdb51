//! `fs_info`: what the store's files use, counted like `du` (allocated blocks, each
//! inode once however many hard links name it).

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

use crate::error::{IoContext, Result};
use crate::types::{FsUsage, UsageDetail};

/// Bytes and inodes used under `root`, which is reported as the mountpoint.
pub(crate) fn usage(root: &Path) -> Result<FsUsage> {
    let mut seen = HashSet::new();
    let mut bytes = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = match path.symlink_metadata() {
            Ok(m) => m,
            // Removed while we walked (a finished download, a sweep): not ours any more.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(crate::error::Error::io(
                    format!("inspecting {}", path.display()),
                    e,
                ))
            }
        };
        if seen.insert((meta.dev(), meta.ino())) {
            bytes += meta.blocks() * 512;
        }
        if meta.is_dir() {
            let entries = match std::fs::read_dir(&path) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(crate::error::Error::io(
                        format!("listing {}", path.display()),
                        e,
                    ))
                }
            };
            for entry in entries {
                let entry = entry.io_context(|| format!("listing {}", path.display()))?;
                stack.push(entry.path());
            }
        }
    }
    Ok(FsUsage {
        timestamp: SystemTime::now(),
        mountpoint: root.to_path_buf(),
        used_bytes: bytes,
        inodes_used: seen.len() as u64,
    })
}

/// `detail` with the size and inodes of the file system holding `dir` (unchanged
/// when it cannot be read).
pub fn with_fs_capacity(mut detail: UsageDetail, dir: &Path) -> UsageDetail {
    if let Ok(fs) = nix::sys::statvfs::statvfs(dir) {
        detail.fs_limit_bytes = fs.blocks() * fs.fragment_size();
        detail.fs_inodes_total = fs.files();
        detail.fs_inodes_free = fs.files_free();
    }
    detail
}
