//! A container's root filesystem: an overlay of the image's unpacked layers (read-only
//! lower directories, shared by every container of the image) and a writable layer of
//! its own (`upper`), mounted at `merged`.

use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

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

/// Opens the directory `rel` of `root` with every component, symlinks included,
/// resolved inside `root` (a link in the image cannot lead out to the host).
fn open_dir_in_root(root: &File, rel: &Path) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let fd = openat2(root.as_raw_fd(), rel, how)?;
    // SAFETY: openat2 returned a new descriptor we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Creates the directory `path` (absolute, as the container sees it) in the mounted
/// rootfs `root`, with its missing parents (mode 0755, owned by root), resolving every
/// component inside `root`. runc does this for the process's working directory, which
/// an image may name without shipping it; without it the container cannot start.
pub fn make_dir_in_root(root: &Path, path: &Path) -> Result<()> {
    let fail = |e: Errno| {
        Error::io(
            format!(
                "creating the working directory {} in {}",
                path.display(),
                root.display()
            ),
            e.into(),
        )
    };
    let root_dir =
        File::open(root).io_context(|| format!("opening the rootfs {}", root.display()))?;
    let mut rel = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => {
                let parent = open_dir_in_root(&root_dir, &rel).map_err(fail)?;
                match mkdirat(
                    Some(parent.as_raw_fd()),
                    name,
                    Mode::from_bits_truncate(0o755),
                ) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(fail(e)),
                }
                rel.push(name);
            }
            // Resolved inside the root by the next open, like any `..` there.
            Component::ParentDir => rel.push(".."),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    // What exists under that name may be a file: say so now, not at start.
    open_dir_in_root(&root_dir, &rel).map(drop).map_err(fail)
}

/// Unmounts the rootfs at `dir` (if mounted) and removes its directories, the writable
/// layer with them. Idempotent.
pub fn remove(dir: &Path) -> Result<()> {
    unmount_volumes(dir)?;
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

/// Where the image volumes of the rootfs at `dir` are mounted: `volumes/<n>`.
fn volumes(dir: &Path) -> PathBuf {
    dir.join("volumes")
}

/// Mounts the image whose unpacked `layers` (topmost first) make it as the `n`th
/// image volume of the rootfs at `dir`: a read-only overlay with no upper layer
/// (nothing the container does reaches the shared layers), under `volumes/<n>`.
/// Returns the host path to bind into the container: the mount, or its directory
/// `sub_path` (resolved inside the image: a link in it cannot lead to the host; it
/// must exist and be a directory).
pub fn mount_image_volume(
    layers: &[PathBuf],
    dir: &Path,
    n: usize,
    sub_path: &Path,
) -> Result<PathBuf> {
    let base = volumes(dir);
    let target = base.join(n.to_string());
    // An empty bottom layer: overlay wants two lower directories when it has no upper.
    let empty = base.join("empty");
    for d in [&target, &empty] {
        fs::create_dir_all(d).io_context(|| format!("creating {}", d.display()))?;
    }
    let lower: Vec<String> = layers
        .iter()
        .chain([&empty])
        .map(|l| l.display().to_string())
        .collect();
    let data = format!("lowerdir={}", lower.join(":"));
    if data.len() > MAX_MOUNT_DATA {
        return Err(Error::InvalidSpec(format!(
            "the image volume's image has too many layers ({}) for one overlay mount",
            layers.len()
        )));
    }
    mount(
        Some("overlay"),
        &target,
        Some("overlay"),
        MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOSUID,
        Some(data.as_str()),
    )
    .map_err(|e| {
        Error::io(
            format!("mounting the image volume at {}", target.display()),
            e.into(),
        )
    })?;
    if sub_path.as_os_str().is_empty() {
        return Ok(target);
    }
    let root = File::open(&target).io_context(|| format!("opening {}", target.display()))?;
    let found = open_dir_in_root(&root, sub_path).map_err(|e| {
        Error::InvalidSpec(format!(
            "the image volume's subPath {} is not a directory of the image: {e}",
            sub_path.display()
        ))
    })?;
    // The path the kernel resolved it to: the mount is read-only, so it stays put.
    let real = fs::read_link(format!("/proc/self/fd/{}", found.as_raw_fd()))
        .io_context(|| format!("resolving {}", sub_path.display()))?;
    if !real.starts_with(&target) {
        return Err(Error::InvalidSpec(format!(
            "the image volume's subPath {} leads out of the image",
            sub_path.display()
        )));
    }
    Ok(real)
}

/// Unmounts the image volumes of the rootfs at `dir` (detached, as the rootfs).
fn unmount_volumes(dir: &Path) -> Result<()> {
    let entries = match fs::read_dir(volumes(dir)) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other.io_context(|| format!("listing {}", volumes(dir).display()))?,
    };
    for entry in entries {
        let path = entry
            .io_context(|| format!("listing {}", volumes(dir).display()))?
            .path();
        match umount2(&path, MntFlags::MNT_DETACH) {
            Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
            Err(e) => {
                return Err(Error::io(
                    format!("unmounting {}", path.display()),
                    e.into(),
                ))
            }
        }
    }
    Ok(())
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
    fn a_missing_working_directory_is_made_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("srv")).unwrap();
        // A link naming a host path is followed inside the root, where that path is.
        let outside = dir.path().join("outside");
        let inside = root.join(outside.strip_prefix("/").unwrap());
        fs::create_dir_all(&inside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("srv/link")).unwrap();
        make_dir_in_root(&root, Path::new("/srv/link/app/../work")).unwrap();
        assert!(inside.join("app").is_dir() && inside.join("work").is_dir());
        assert!(!dir.path().join("outside").exists());
        // Existing directories are fine; a file in the way is an error naming the path.
        make_dir_in_root(&root, Path::new("/srv")).unwrap();
        fs::write(root.join("file"), b"").unwrap();
        let err = make_dir_in_root(&root, Path::new("/file/sub")).unwrap_err();
        assert!(err.to_string().contains("/file/sub"), "{err}");
    }

    /// Unmounts the image volumes of a test's rootfs directory, also when it fails.
    struct Volumes(PathBuf);

    impl Drop for Volumes {
        fn drop(&mut self) {
            unmount_volumes(&self.0).unwrap();
        }
    }

    #[test]
    fn an_image_volume_sub_path_through_a_link_never_leads_to_the_host() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test mounts overlays: run the tests as root, as CI does"
        );
        let dir = tempfile::tempdir().unwrap();
        // What an attacker's image would reach: a host directory with a secret, and
        // the host's /etc.
        let outside = dir.path().join("outside");
        fs::create_dir_all(outside.join("secret")).unwrap();
        assert!(Path::new("/etc/passwd").is_file());
        // The image: /etc and /data of its own, and links out of it.
        let layer = dir.path().join("layer");
        fs::create_dir_all(layer.join("etc")).unwrap();
        fs::write(layer.join("etc/passwd"), b"the image's\n").unwrap();
        fs::create_dir_all(layer.join("data")).unwrap();
        let links: [(&str, PathBuf); 7] = [
            ("abs-etc", "/etc".into()),
            ("rel-up", "../../..".into()),
            ("rel-etc", "../../../../../../../etc".into()),
            ("abs-outside", outside.clone()),
            // From a volume's mount point (rootfs/volumes/<n>) up to `outside`.
            ("rel-outside", "../../../outside".into()),
            ("magic", "/proc/self/root/etc".into()),
            ("file", "etc/passwd".into()),
        ];
        for (name, target) in &links {
            std::os::unix::fs::symlink(target, layer.join(name)).unwrap();
        }
        let rootfs = dir.path().join("rootfs");
        let _mounted = Volumes(rootfs.clone());
        let image = volumes(&rootfs);
        let layers = [layer];
        let mounted = |n: usize, sub: &str| mount_image_volume(&layers, &rootfs, n, Path::new(sub));

        // Links resolve inside the image: its own /etc, its own root.
        for (n, sub, inside) in [
            (0, "abs-etc", "etc"),
            (1, "rel-etc", "etc"),
            (2, "rel-up", ""),
            (3, "rel-up/data", "data"),
            (4, "abs-etc/../../../etc", "etc"),
        ] {
            let got = mounted(n, sub).unwrap();
            let volume = image.join(n.to_string());
            assert_eq!(got, volume.join(inside), "{sub}");
            assert!(got.starts_with(&image), "{sub}: {}", got.display());
            if inside == "etc" {
                assert_eq!(
                    fs::read(got.join("passwd")).unwrap(),
                    b"the image's\n",
                    "{sub}"
                );
            }
        }
        // What exists only outside the image, a magic link and a file are refused.
        for (n, sub) in [
            (5, "abs-outside/secret"),
            (6, "rel-outside/secret"),
            (7, "abs-etc/ssl"),
            (8, "magic"),
            (9, "file"),
            (10, "missing"),
        ] {
            let err = mounted(n, sub).unwrap_err();
            assert!(matches!(err, Error::InvalidSpec(_)), "{sub}: {err:?}");
            assert!(
                err.to_string().contains("is not a directory of the image"),
                "{sub}: {err}"
            );
        }
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
