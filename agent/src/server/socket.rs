//! The CRI socket: one berth per socket, a stale socket replaced, mode 0600.
//!
//! An exclusive `flock` on `<socket>.lock` decides who owns the socket; the kernel drops
//! it when its holder dies, so a crash never leaves berth locked out. The lock file
//! itself stays (unlinking it would let two processes lock two different files).

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::stat::{umask, Mode};

use crate::error::{Error, Result};

/// Ownership of the socket path for the life of this process.
#[derive(Debug)]
pub struct SocketGuard {
    socket: PathBuf,
    _lock: Flock<File>,
}

impl SocketGuard {
    /// Creates the socket's directory (0755) when missing, takes the lock, and clears a
    /// stale socket left by a dead berth. Refuses when another berth holds the lock,
    /// when something still accepts connections on the socket, or when the path is not
    /// a socket.
    pub fn acquire(socket: &Path) -> Result<SocketGuard> {
        if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(|e| {
                    Error::io(format!("creating socket directory {}", dir.display()), e)
                })?;
        }
        let lock_path = lock_path(socket);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("opening lock file {}", lock_path.display()), e))?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
            if errno == Errno::EWOULDBLOCK {
                Error::AlreadyRunning {
                    lock: lock_path.clone(),
                    socket: socket.to_path_buf(),
                }
            } else {
                Error::io(format!("locking {}", lock_path.display()), errno.into())
            }
        })?;
        clear_stale(socket)?;
        Ok(SocketGuard {
            socket: socket.to_path_buf(),
            _lock: lock,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.socket
    }

    /// Binds the socket, readable and writable by its owner only. Call inside a tokio
    /// runtime.
    pub fn bind(&self) -> Result<tokio::net::UnixListener> {
        let context = || format!("binding {}", self.socket.display());
        // The socket is created with mode 0600 rather than chmod-ed afterwards, so no
        // one can connect in between. umask is process-wide; nothing else creates
        // files while berth starts.
        let previous = umask(Mode::from_bits_truncate(0o177));
        let bound = UnixListener::bind(&self.socket);
        umask(previous);
        let listener = bound.map_err(|e| Error::io(context(), e))?;
        fs::set_permissions(&self.socket, Permissions::from_mode(0o600))
            .map_err(|e| Error::io(context(), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io(context(), e))?;
        tokio::net::UnixListener::from_std(listener).map_err(|e| Error::io(context(), e))
    }

    /// Removes the socket file at shutdown; an already missing file is fine.
    pub fn remove_socket(&self) {
        match fs::remove_file(&self.socket) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(socket = %self.socket.display(), error = %e, "could not remove the socket")
            }
        }
    }
}

/// `<socket>.lock`, next to the socket.
fn lock_path(socket: &Path) -> PathBuf {
    let mut name = socket.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    socket.with_file_name(name)
}

/// Removes a socket nobody serves; refuses a live socket or a non-socket.
fn clear_stale(socket: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(socket) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("checking {}", socket.display()), e)),
    };
    if !meta.file_type().is_socket() {
        return Err(Error::NotASocket {
            path: socket.to_path_buf(),
        });
    }
    match UnixStream::connect(socket) {
        Ok(_) => Err(Error::SocketInUse {
            socket: socket.to_path_buf(),
        }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            fs::remove_file(socket)
                .map_err(|e| Error::io(format!("removing stale socket {}", socket.display()), e))?;
            tracing::info!(socket = %socket.display(), "removed a stale socket left by a previous berth");
            Ok(())
        }
        Err(e) => Err(Error::io(
            format!("checking whether {} is in use", socket.display()),
            e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn the_lock_sits_next_to_the_socket() {
        assert_eq!(
            lock_path(Path::new("/run/berth/berth.sock")),
            Path::new("/run/berth/berth.sock.lock")
        );
    }

    #[tokio::test]
    async fn binds_0600_and_refuses_a_second_owner() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("sub/berth.sock");
        let guard = SocketGuard::acquire(&socket).unwrap();
        let _listener = guard.bind().unwrap();
        assert_eq!(fs::metadata(&socket).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(dir.path().join("sub")).unwrap().mode() & 0o777,
            0o755
        );
        // flock is per open file description, so a second open in this process conflicts.
        let err = SocketGuard::acquire(&socket).unwrap_err();
        assert!(matches!(err, Error::AlreadyRunning { .. }), "{err:?}");
        guard.remove_socket();
        assert!(!socket.exists());
    }

    #[test]
    fn a_stale_socket_is_replaced_and_a_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("berth.sock");
        let live = UnixListener::bind(&socket).unwrap();
        let err = SocketGuard::acquire(&socket).unwrap_err();
        assert!(matches!(err, Error::SocketInUse { .. }), "{err:?}");
        drop(live); // the file stays: now it is stale
        assert!(socket.exists());
        let _guard = SocketGuard::acquire(&socket).unwrap();
        assert!(!socket.exists());
    }

    #[test]
    fn a_regular_file_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("berth.sock");
        fs::write(&socket, "precious").unwrap();
        let err = SocketGuard::acquire(&socket).unwrap_err();
        assert!(matches!(err, Error::NotASocket { .. }), "{err:?}");
        assert_eq!(fs::read_to_string(&socket).unwrap(), "precious");
    }
}
