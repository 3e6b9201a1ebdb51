//! The rootfs of a container in a pod with a user namespace. Its files belong to the
//! node's ids, which mean nothing (the overflow id) inside the namespace: the
//! container's root could not write its own `/etc` or make a mount point. So every
//! file of the container's overlay gets the host id its owner maps to. The chown
//! copies each file up into the container's own writable layer (the shared image
//! layers stay as they are), which costs the image's size once per such container;
//! an idmapped mount of the layers would avoid the copy.

use std::fs;
use std::os::unix::fs::{lchown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::types::IdMapping;

/// The host id that `id` (inside the namespace) maps to under `maps`, if any.
pub fn to_host(id: u32, maps: &[IdMapping]) -> Option<u32> {
    maps.iter().find_map(|m| {
        let offset = id.checked_sub(m.container_id)?;
        (offset < m.length).then(|| m.host_id.checked_add(offset))?
    })
}

/// Gives every file below `root` (itself included, symlinks not followed) the host
/// uid and gid its owner maps to under `uids` and `gids`; ids without a mapping stay.
/// Set-user-id and set-group-id bits, which a chown clears, are put back.
pub fn remap_owners(root: &Path, uids: &[IdMapping], gids: &[IdMapping]) -> Result<()> {
    let mut pending: Vec<PathBuf> = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = fs::symlink_metadata(&path)
            .io_context(|| format!("reading the owner of {}", path.display()))?;
        let uid = to_host(meta.uid(), uids).unwrap_or(meta.uid());
        let gid = to_host(meta.gid(), gids).unwrap_or(meta.gid());
        if (uid, gid) != (meta.uid(), meta.gid()) {
            lchown(&path, Some(uid), Some(gid))
                .io_context(|| format!("changing the owner of {}", path.display()))?;
            if meta.is_file() && meta.mode() & 0o6000 != 0 {
                fs::set_permissions(&path, fs::Permissions::from_mode(meta.mode() & 0o7777))
                    .io_context(|| format!("restoring the mode of {}", path.display()))?;
            }
        }
        if meta.is_dir() {
            for entry in fs::read_dir(&path).io_context(|| format!("listing {}", path.display()))? {
                let entry =
                    entry.map_err(|e| Error::io(format!("listing {}", path.display()), e))?;
                pending.push(entry.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_within_their_range_only() {
        let maps = [IdMapping::new(0, 1000, 100), IdMapping::new(500, 5000, 10)];
        assert_eq!(to_host(0, &maps), Some(1000));
        assert_eq!(to_host(99, &maps), Some(1099));
        assert_eq!(to_host(100, &maps), None);
        assert_eq!(to_host(505, &maps), Some(5005));
        assert_eq!(to_host(510, &maps), None);
        assert_eq!(
            to_host(0, &[IdMapping::new(0, u32::MAX, 2)]),
            Some(u32::MAX)
        );
        assert_eq!(
            to_host(1, &[IdMapping::new(0, u32::MAX, 2)]),
            None,
            "no overflow"
        );
    }

    #[test]
    fn owners_move_to_their_host_ids_and_setuid_survives() {
        berth_testkit::require::root("chown needs CAP_CHOWN");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        fs::create_dir_all(root.join("bin")).unwrap();
        let tool = root.join("bin/tool");
        fs::write(&tool, "x").unwrap();
        fs::set_permissions(&tool, fs::Permissions::from_mode(0o4755)).unwrap();
        std::os::unix::fs::symlink("/nowhere", root.join("link")).unwrap();
        lchown(root.join("bin"), Some(7), Some(8)).unwrap();
        let maps = [IdMapping::new(0, 100000, 65536)];
        remap_owners(&root, &maps, &maps).unwrap();
        let owner = |p: &Path| {
            let m = fs::symlink_metadata(p).unwrap();
            (m.uid(), m.gid())
        };
        assert_eq!(owner(&root), (100000, 100000));
        assert_eq!(owner(&root.join("bin")), (100007, 100008));
        assert_eq!(owner(&tool), (100000, 100000));
        assert_eq!(owner(&root.join("link")), (100000, 100000));
        assert_eq!(fs::metadata(&tool).unwrap().mode() & 0o7777, 0o4755);
    }
}
