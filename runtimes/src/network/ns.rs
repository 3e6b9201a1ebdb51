//! Namespace pins. A pod's network, IPC and UTS namespaces are created by a short-lived
//! thread and kept alive by a bind mount at `<run_dir>/<kind>ns/<key>`, so they outlive
//! every process of the pod and no pause container is needed (like CRI-O's
//! `drop_infra_ctr`). Containers join them by path; code that must run inside one (CNI
//! checks, sysctls, counters) does so in a throwaway thread through [`in_namespace`].
//! A pod's user namespace, and the namespaces it owns, are made by a short-lived child
//! process instead (`userns`): a thread of a multi-threaded process cannot unshare one.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::statfs::{statfs, NSFS_MAGIC};

use crate::error::{Error, IoContext, Result};

/// A namespace kind a pod can have pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NsKind {
    /// The network namespace (CNI attaches to it).
    Net,
    /// The IPC namespace (SysV IPC, POSIX message queues).
    Ipc,
    /// The UTS namespace (hostname).
    Uts,
    /// The user namespace (uid/gid mappings); pinned only together with the namespaces
    /// it owns (`Network::pin_with_userns`), never joined by [`in_namespace`] (a thread
    /// of a multi-threaded process cannot join one).
    User,
}

/// How many kinds there are (the size of per-kind tables).
const KINDS: usize = 4;

impl NsKind {
    pub(super) fn flag(self) -> CloneFlags {
        match self {
            NsKind::Net => CloneFlags::CLONE_NEWNET,
            NsKind::Ipc => CloneFlags::CLONE_NEWIPC,
            NsKind::Uts => CloneFlags::CLONE_NEWUTS,
            NsKind::User => CloneFlags::CLONE_NEWUSER,
        }
    }

    /// The entry under `/proc/<tid>/ns/`.
    pub(super) fn proc_name(self) -> &'static str {
        match self {
            NsKind::Net => "net",
            NsKind::Ipc => "ipc",
            NsKind::Uts => "uts",
            NsKind::User => "user",
        }
    }

    /// The directory under the run dir holding pins of this kind.
    fn dir_name(self) -> &'static str {
        match self {
            NsKind::Net => "netns",
            NsKind::Ipc => "ipcns",
            NsKind::Uts => "utsns",
            NsKind::User => "userns",
        }
    }
}

/// The pins of one run dir.
pub(crate) struct Pins {
    root: PathBuf,
    /// Serialises pin/unpin (two pins of one key must not stack mounts) and remembers
    /// which pin dirs this process has made shared already.
    shared: Mutex<[bool; KINDS]>,
}

impl Pins {
    /// Pins under `root` (the canonical run dir).
    pub(crate) fn new(root: PathBuf) -> Self {
        Pins {
            root,
            shared: Mutex::new([false; KINDS]),
        }
    }

    /// Where the pin of `kind` for `key` lives (whether or not it exists).
    pub(crate) fn path(&self, kind: NsKind, key: &str) -> PathBuf {
        self.root.join(kind.dir_name()).join(key)
    }

    /// Creates and pins a new namespace, or returns the existing pin. A user namespace
    /// is pinned only with [`Pins::pin_in_userns`].
    pub(crate) fn pin(&self, kind: NsKind, key: &str) -> Result<PathBuf> {
        if kind == NsKind::User {
            return Err(Error::backend(
                "netns",
                "a user namespace is pinned with the namespaces it owns",
            ));
        }
        let mut shared = self.lock()?;
        let pin = self.pin_file(&mut shared, kind, key)?;
        if is_ns_mount(&pin)? {
            return Ok(pin);
        }
        if let Err(e) = new_pinned(kind, &pin) {
            let _ = fs::remove_file(&pin);
            return Err(e);
        }
        Ok(pin)
    }

    /// The pin lock; see [`Pins::shared`].
    pub(super) fn lock(&self) -> Result<std::sync::MutexGuard<'_, [bool; KINDS]>> {
        self.shared
            .lock()
            .map_err(|_| Error::backend("netns", "pin lock poisoned"))
    }

    /// The pin file of `kind` for `key`, created (empty) if missing, in a pin dir made
    /// shared. `shared` is the held pin lock.
    pub(super) fn pin_file(
        &self,
        shared: &mut [bool; KINDS],
        kind: NsKind,
        key: &str,
    ) -> Result<PathBuf> {
        let dir = self.root.join(kind.dir_name());
        if !shared[kind as usize] {
            ensure_shared_dir(&dir)?;
            shared[kind as usize] = true;
        }
        let pin = dir.join(key);
        if is_ns_mount(&pin)? {
            return Ok(pin); // pinned already (a pin cannot be opened for writing)
        }
        // A file without a mount is what a crash between create and mount leaves: reuse it.
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o444)
            .open(&pin)
            .io_context(|| format!("creating the namespace pin {}", pin.display()))?;
        Ok(pin)
    }

    /// Unmounts and removes the pin; a missing pin is fine. The namespace itself goes
    /// away once no process or other mount holds it.
    pub(crate) fn unpin(&self, kind: NsKind, key: &str) -> Result<()> {
        let _serial = self.lock()?;
        self.unpin_locked(kind, key)
    }

    /// [`Pins::unpin`] with the pin lock held.
    pub(super) fn unpin_locked(&self, kind: NsKind, key: &str) -> Result<()> {
        let pin = self.path(kind, key);
        // Mounts can be stacked if something else pinned onto the same file; unmount all.
        for _ in 0..8 {
            match umount2(&pin, MntFlags::MNT_DETACH) {
                Ok(()) => continue,
                Err(Errno::EINVAL) | Err(Errno::ENOENT) => break,
                Err(e) => {
                    return Err(Error::io(
                        format!("unmounting the namespace pin {}", pin.display()),
                        e.into(),
                    ))
                }
            }
        }
        match fs::remove_file(&pin) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(
                format!("removing the namespace pin {}", pin.display()),
                e,
            )),
            _ => Ok(()),
        }
    }
}

/// True when `path` is a mounted namespace file (nsfs), false when it is missing or a
/// plain file.
pub(crate) fn is_ns_mount(path: &Path) -> Result<bool> {
    match statfs(path) {
        Ok(fs) => Ok(fs.filesystem_type() == NSFS_MAGIC),
        Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(Error::io(format!("statfs {}", path.display()), e.into())),
    }
}

/// Bind-mounts the namespace file `source` (a `/proc/…/ns/…` entry) onto `pin`.
pub(super) fn bind_ns(source: &str, pin: &Path) -> Result<()> {
    mount(
        Some(source),
        pin,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        Error::io(
            format!("bind-mounting {source} onto {}", pin.display()),
            e.into(),
        )
    })
}

/// Unshares `kind` in a fresh thread and bind-mounts that thread's namespace onto `pin`.
/// `unshare` changes only the calling thread, and the thread ends right after, so no
/// other code of ours ever runs inside the new namespace.
fn new_pinned(kind: NsKind, pin: &Path) -> Result<()> {
    let source = format!("/proc/thread-self/ns/{}", kind.proc_name());
    std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            unshare(kind.flag())
                .map_err(|e| Error::io(format!("unshare({:?})", kind.flag()), e.into()))?;
            bind_ns(&source, pin)
        })
        .join()
        .map_err(|_| Error::backend("netns", "the namespace pinning thread panicked"))?
    })
}

/// Makes `dir` a mount point of its own with shared propagation, as `ip netns` does for
/// `/run/netns`: unmounting a pin then propagates into mount namespaces that copied it
/// (a container created while the pin existed), instead of keeping the namespace alive.
fn ensure_shared_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).io_context(|| format!("creating {}", dir.display()))?;
    let mountinfo =
        fs::read_to_string("/proc/self/mountinfo").io_context(|| "reading /proc/self/mountinfo")?;
    if !is_mount_point(&mountinfo, dir) {
        mount(
            Some(dir),
            dir,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| {
            Error::io(
                format!("bind-mounting {} onto itself", dir.display()),
                e.into(),
            )
        })?;
    }
    mount(
        None::<&str>,
        dir,
        None::<&str>,
        MsFlags::MS_SHARED | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| Error::io(format!("making {} a shared mount", dir.display()), e.into()))
}

/// True when `/proc/self/mountinfo` (given as text) has a mount at `dir`.
pub(crate) fn is_mount_point(mountinfo: &str, dir: &Path) -> bool {
    let escaped = escape_mount_path(dir);
    mountinfo
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(escaped.as_str()))
}

/// A path as mountinfo writes it: space, tab, newline and backslash as octal escapes.
pub(crate) fn escape_mount_path(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        match c {
            ' ' | '\t' | '\n' | '\\' => out.push_str(&format!("\\{:03o}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Runs `f` in a thread that has joined the `kind` namespace pinned at `path`, and
/// returns what `f` returns. Only that thread changes namespace; it ends afterwards.
/// For a network namespace, `/proc/thread-self/net/*` shows the namespace's view (the
/// sysfs mounted in the caller's mount namespace does not).
pub fn in_namespace<T: Send>(kind: NsKind, path: &Path, f: impl FnOnce() -> T + Send) -> Result<T> {
    let file = File::open(path).io_context(|| format!("opening namespace {}", path.display()))?;
    std::thread::scope(|s| {
        s.spawn(move || -> Result<T> {
            setns(&file, kind.flag()).map_err(|e| {
                Error::io(
                    format!(
                        "joining the {} namespace {}",
                        kind.proc_name(),
                        path.display()
                    ),
                    e.into(),
                )
            })?;
            Ok(f())
        })
        .join()
        .map_err(|_| Error::backend("netns", "a namespace thread panicked"))?
    })
}

/// Brings `lo` up in the calling thread's network namespace (what the CNI `loopback`
/// plugin would do, without a process).
pub(crate) fn loopback_up() -> io::Result<()> {
    use std::os::fd::AsRawFd;

    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq that outlives the call; SIOCGIFFLAGS fills ifru_flags.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS initialised the flags member of the union.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_matched_with_mountinfo_escapes() {
        let info = "36 35 98:0 / /run/berth/netns rw,nosuid shared:7 - tmpfs tmpfs rw\n\
                    37 35 98:0 / /run/with\\040space/netns rw shared:8 - tmpfs tmpfs rw\n";
        assert!(is_mount_point(info, Path::new("/run/berth/netns")));
        assert!(is_mount_point(info, Path::new("/run/with space/netns")));
        assert!(!is_mount_point(info, Path::new("/run/berth")));
        assert!(!is_mount_point(info, Path::new("/run/berth/netns/x")));
    }

    #[test]
    fn kinds_have_distinct_dirs() {
        let pins = Pins::new(PathBuf::from("/r"));
        assert_eq!(pins.path(NsKind::Net, "p"), Path::new("/r/netns/p"));
        assert_eq!(pins.path(NsKind::Ipc, "p"), Path::new("/r/ipcns/p"));
        assert_eq!(pins.path(NsKind::Uts, "p"), Path::new("/r/utsns/p"));
        assert_eq!(pins.path(NsKind::User, "p"), Path::new("/r/userns/p"));
    }
}
