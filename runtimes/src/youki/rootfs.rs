//! A container's root filesystem: an overlay of the image's unpacked layers (read-only
//! lower directories, shared by every container of the image) and a writable layer of
//! its own (`upper`), mounted at `merged`.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{mkdirat, Mode};

use crate::error::{Error, IoContext, Result};

/// The mount data must fit in one page.
const MAX_MOUNT_DATA: usize = 4095;

/// The writable layer of the rootfs at `dir`.
pub fn upper(dir: &Path) -> PathBuf {
    dir.join("upper")
}

/// Where the rootfs at `dir` is mounted.
pub fn merged(dir: &Path) -> PathBuf {
    dir.join("merged")
}

/// The overlay mount options for `layers` (topmost first).
fn options(layers: &[PathBuf], dir: &Path) -> Result<String> {
    let lower: Vec<String> = layers.iter().map(|l| l.display().to_string()).collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper(dir).display(),
        dir.join("work").display()
    );
    if data.len() > MAX_MOUNT_DATA {
        return Err(Error::InvalidSpec(format!(
            "the image has too many layers ({}) for one overlay mount",
            layers.len()
        )));
    }
    Ok(data)
}

/// Mounts the overlay of `layers` (topmost first) at `<dir>/merged`, creating the
/// directories; returns the mount point. An image without layers gets an empty one.
pub fn mount_overlay(layers: &[PathBuf], dir: &Path) -> Result<PathBuf> {
    let mut layers = layers.to_vec();
    if layers.is_empty() {
        layers.push(dir.join("empty"));
    }
    for d in layers.iter().filter(|d| d.starts_with(dir)).chain([
        &upper(dir),
        &dir.join("work"),
        &merged(dir),
    ]) {
        fs::create_dir_all(d).io_context(|| format!("creating {}", d.display()))?;
    }
    let data = options(&layers, dir)?;
    let target = merged(dir);
    mount(
        Some("overlay"),
        &target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(|e| {
        Error::io(
            format!("mounting the overlay at {}", target.display()),
            e.into(),
        )
    })?;
    Ok(target)
}

/// Creates the directory `path` (absolute, as the container sees it) in the mounted
/// `rootfs` unless it exists, as runc does for a process's working directory: images
/// may name one they do not contain. Every component resolves inside `rootfs`, so a
/// symlink in the image cannot make it create anything outside.
pub fn ensure_dir(rootfs: &Path, path: &str) -> Result<()> {
    // Lexically clean: `..` stops at the root, as it does inside the container.
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name),
        }
    }
    let root = fs::File::open(rootfs).io_context(|| format!("opening {}", rootfs.display()))?;
    let open = |rel: &str| {
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        openat2(
            root.as_raw_fd(),
            if rel.is_empty() { "." } else { rel },
            how,
        )
        // SAFETY: openat2 returned a new descriptor we now own.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let failed = |what: &str, e: Errno| {
        Error::io(format!("{what} {path} in {}", rootfs.display()), e.into())
    };
    for i in 1..=parts.len() {
        let rel = parts[..i].join("/");
        match open(&rel) {
            Ok(_) => continue,
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(failed("resolving", e)),
        }
        let parent = open(&parts[..i - 1].join("/")).map_err(|e| failed("resolving", e))?;
        match mkdirat(
            Some(parent.as_raw_fd()),
            parts[i - 1],
            Mode::from_bits_truncate(0o755),
        ) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(failed("creating", e)),
        }
    }
    Ok(())
}

/// Unmounts the rootfs at `dir` (if mounted) and removes its directories, the writable
/// layer with them. Idempotent.
pub fn remove(dir: &Path) -> Result<()> {
    let target = merged(dir);
    // Detached: a process still holding a file open must not make removal fail.
    match umount2(&target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(e) => {
            return Err(Error::io(
                format!("unmounting {}", target.display()),
                e.into(),
            ))
        }
    }
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(Error::io(format!("removing {}", dir.display()), e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_list_layers_topmost_first() {
        let dir = Path::new("/s/c/rootfs");
        let data = options(&["/l/top".into(), "/l/base".into()], dir).unwrap();
        assert_eq!(
            data,
            "lowerdir=/l/top:/l/base,upperdir=/s/c/rootfs/upper,workdir=/s/c/rootfs/work"
        );
    }

    #[test]
    fn too_many_layers_is_a_clear_error() {
        let layers: Vec<PathBuf> = (0..100)
            .map(|i| PathBuf::from(format!("/var/lib/berth/images/layers/{i:064}")))
            .collect();
        let err = options(&layers, Path::new("/x")).unwrap_err().to_string();
        assert!(err.contains("too many layers (100)"), "{err}");
    }

    #[test]
    fn ensure_dir_creates_inside_the_root_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        // An absolute symlink in the image points inside the root, not at the host.
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        ensure_dir(&root, "/work/a/../b/./c").unwrap();
        assert!(root.join("work/b/c").is_dir());
        assert!(!root.join("work/a").exists());
        ensure_dir(&root, "/link/made").unwrap();
        assert!(root.join("etc/made").is_dir());
        ensure_dir(&root, "/../../escape").unwrap();
        assert!(root.join("escape").is_dir());
        assert!(!tmp.path().join("escape").exists());
        // Existing directories are left alone; "/" is there already.
        ensure_dir(&root, "/work/b").unwrap();
        ensure_dir(&root, "/").unwrap();
        fs::write(root.join("file"), b"").unwrap();
        assert!(ensure_dir(&root, "/file/sub").is_err());
    }

    #[test]
    fn removing_twice_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        fs::create_dir_all(upper(&rootfs)).unwrap();
        remove(&rootfs).unwrap();
        assert!(!rootfs.exists());
        remove(&rootfs).unwrap();
    }
}
