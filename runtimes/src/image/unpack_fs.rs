//! The filesystem calls layer unpacking needs that std does not offer, all of them
//! acting on the named entry itself (never following a final symlink).

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The kinds of special file `mknod` creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Special {
    /// A character device.
    Char,
    /// A block device.
    Block,
    /// A named pipe.
    Fifo,
}

/// Creates a device node or FIFO at `path`.
pub(crate) fn mknod(
    path: &Path,
    kind: Special,
    perm: u32,
    major: u32,
    minor: u32,
) -> io::Result<()> {
    let kind_bits = match kind {
        Special::Char => libc::S_IFCHR,
        Special::Block => libc::S_IFBLK,
        Special::Fifo => libc::S_IFIFO,
    };
    let path = c_path(path)?;
    // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
    check(unsafe {
        libc::mknod(
            path.as_ptr(),
            kind_bits | (perm & 0o7777),
            libc::makedev(major, minor),
        )
    })
}

/// Sets extended attribute `name` on `path` itself.
pub(crate) fn lsetxattr(path: &Path, name: &str, value: &[u8]) -> io::Result<()> {
    let path = c_path(path)?;
    let name = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "xattr name contains NUL"))?;
    // SAFETY: both strings are NUL-terminated and `value` is valid for `value.len()` bytes.
    check(unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}

/// Reads extended attribute `name` of `path` itself.
#[cfg(test)]
pub(crate) fn lgetxattr(path: &Path, name: &str) -> io::Result<Vec<u8>> {
    let path = c_path(path)?;
    let name = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "xattr name contains NUL"))?;
    let mut buf = vec![0u8; 4096];
    // SAFETY: both strings are NUL-terminated and `buf` is writable for its length.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// Sets access and modification time of `path` itself.
pub(crate) fn set_times(path: &Path, seconds: i64, nanos: u32) -> io::Result<()> {
    let path = c_path(path)?;
    let ts = libc::timespec {
        tv_sec: seconds as libc::time_t,
        tv_nsec: nanos as libc::c_long,
    };
    let times = [ts, ts];
    // SAFETY: `path` is NUL-terminated and `times` holds the two timespecs utimensat reads.
    check(unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            path.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// Flushes the filesystem holding `path` to disk (one call instead of an fsync per file).
pub(crate) fn syncfs(path: &Path) -> io::Result<()> {
    let dir = std::fs::File::open(path)?;
    nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&dir)).map_err(io::Error::from)
}

/// Starts writing `len` bytes of `file` from `offset` back to disk without waiting
/// for it: the data of a layer goes to the disk while the rest of the pull still
/// downloads, and the pull's one [`syncfs`] at its end finds little left to write (it
/// waited ~130 ms for a 200 MiB image written only in the page cache). A hint: its
/// failure changes nothing but when the bytes are written.
pub(crate) fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a plain syscall on an fd `file` keeps open; no memory is passed.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}
