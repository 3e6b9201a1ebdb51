//! Whether any container's state may have moved since a moment, known without
//! looking at each container: a generation ([`Changes::generation`]) that moves with
//! every change of what [`Backend::container_states`](super::backend::Backend) reads.
//! Listings (kubelet's PLEG lists every second) keep each container's state with the
//! generation it was read at and read again only what changed, so a listing of
//! hundreds of containers is an in-memory filter, not a stat per container.
//!
//! What moves it: every write of a record to the index (create, start, the phases of
//! a stop and a removal: [`Changes::bump`] in the backend's record writes), every
//! entry made in a container's directory, above all the exit record its supervisor
//! writes when the container ends by itself (one inotify watch per container
//! directory, drained without blocking when the generation is read), and a
//! supervisor's death (its pidfd, polled then: `Supervisors::deaths`). Without
//! inotify, or once a watch could not be added, the generation is unknown (`None`)
//! and listings ask about every container, as before.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The generation of the backend's container states.
#[derive(Debug)]
pub struct Changes {
    generation: AtomicU64,
    /// The watches of the container directories (non-blocking).
    inotify: Option<OwnedFd>,
    /// A watch could not be added (or read): an exit may go unseen.
    blind: AtomicBool,
}

impl Default for Changes {
    fn default() -> Self {
        // SAFETY: a plain syscall; on success it returns a new descriptor we own.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        let inotify = (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) });
        if inotify.is_none() {
            tracing::warn!(error = %std::io::Error::last_os_error(), "youki: no inotify; listings ask about every container");
        }
        Changes {
            generation: AtomicU64::new(0),
            blind: AtomicBool::new(inotify.is_none()),
            inotify,
        }
    }
}

impl Changes {
    /// Something a container's state depends on changed (called after the change).
    pub fn bump(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Watches the container directory `dir` for new entries (its exit record).
    pub fn watch(&self, dir: &Path) {
        let Some(fd) = &self.inotify else { return };
        let added = CString::new(dir.as_os_str().as_bytes()).is_ok_and(|path| {
            // SAFETY: `path` is a valid C string and `fd` an inotify descriptor we own.
            let wd = unsafe {
                libc::inotify_add_watch(
                    fd.as_raw_fd(),
                    path.as_ptr(),
                    libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_ONLYDIR,
                )
            };
            wd >= 0
        });
        if !added && !self.blind.swap(true, Ordering::SeqCst) {
            tracing::warn!(dir = %dir.display(), error = %std::io::Error::last_os_error(),
                "youki: cannot watch a container directory; listings ask about every container from now on");
        }
    }

    /// The generation, after taking in what the watches saw; `None` when an exit could
    /// go unseen.
    pub fn generation(&self) -> Option<u64> {
        let fd = self.inotify.as_ref()?;
        if self.blind.load(Ordering::SeqCst) {
            return None;
        }
        let mut seen = false;
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: reads into a buffer we own, of its length.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                seen = true;
                continue;
            }
            let err = std::io::Error::last_os_error();
            if n < 0 && err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            if n < 0 && err.kind() != std::io::ErrorKind::WouldBlock {
                self.blind.store(true, Ordering::SeqCst);
                tracing::warn!(error = %err, "youki: reading the container watches failed; listings ask about every container from now on");
                return None;
            }
            break;
        }
        if seen {
            self.bump();
        }
        Some(self.generation.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_with_bumps_and_new_entries_of_watched_directories() {
        let dir = tempfile::tempdir().unwrap();
        let changes = Changes::default();
        changes.watch(dir.path());
        let g0 = changes.generation().unwrap();
        assert_eq!(changes.generation(), Some(g0), "nothing happened");
        std::fs::write(dir.path().join("exit.json"), b"{}").unwrap();
        let g1 = changes.generation().unwrap();
        assert!(g1 > g0, "an exit record moves it");
        assert_eq!(changes.generation(), Some(g1));
        changes.bump();
        assert!(changes.generation().unwrap() > g1);
    }

    #[test]
    fn a_directory_it_cannot_watch_makes_it_unknown() {
        let changes = Changes::default();
        changes.watch(Path::new("/nonexistent/berth/container"));
        assert_eq!(changes.generation(), None);
    }
}
