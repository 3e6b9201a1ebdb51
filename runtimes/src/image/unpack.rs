//! Unpacking a layer blob into a directory overlayfs can use as a lowerdir.
//!
//! Whiteouts (`.wh.<name>`) become 0:0 character devices, opaque markers
//! (`.wh..wh..opq`) become `trusted.overlay.opaque=y` on their directory. Ownership,
//! modes, mtimes, xattrs, hard links, symlinks and device nodes are kept. No entry
//! may leave the layer directory: `..` components are refused, and no path is
//! resolved through a symlink (a layer's symlinks are stored, never followed). The
//! caller unpacks into a fresh temp directory and renames it into place afterwards.

use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use tar::EntryType;

use super::digest::HashingReader;
use super::unpack_fs::{lsetxattr, mknod, set_times, start_writeback, Special};
use crate::error::{Error, IoContext, Result};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const XATTR_PAX_PREFIX: &str = "SCHILY.xattr.";
/// Bytes that tell a blob's compression (zstd's magic number; gzip's is 2).
const MAGIC_LEN: usize = 4;
/// Bytes of a file's contents read and written at a time.
const COPY_BUF: usize = 256 << 10;
/// Bytes of a file written between two starts of their writeback to disk.
const WRITEBACK_STEP: u64 = 4 << 20;

/// The parent layers of a layer, topmost first: a hard link to a file only they hold
/// copies the file up. They may still be unpacking (a pull unpacks its layers in
/// parallel): `wait` returns once they are all in place.
pub(crate) struct Lowers<'a> {
    pub dirs: &'a [PathBuf],
    pub wait: &'a dyn Fn() -> Result<()>,
}

/// Unpacks the layer blob `blob` (gzip, zstd or plain tar, read as it comes) into the
/// empty directory `dest` and returns the digest of the uncompressed tar (its diff
/// id). `what` names the layer in errors; `cancel` stops the work between entries.
pub(crate) fn unpack<'b>(
    what: &str,
    blob: impl BufRead + 'b,
    dest: &Path,
    lowers: &Lowers<'_>,
    cancel: &AtomicBool,
) -> Result<String> {
    let corrupt = |e: io::Error| Error::DataLoss {
        what: what.to_string(),
        message: format!("unreadable layer: {e}"),
    };
    // The first bytes tell the compression. The decoders read the blob's own
    // buffers (a download's chunks), not a copy of them; a stream that hands its
    // first bytes over in pieces smaller than the magic is read through a buffer.
    let mut blob = blob;
    let whole = blob.fill_buf().map_err(corrupt)?.len() >= MAGIC_LEN;
    let mut reader: Box<dyn BufRead + 'b> = if whole {
        Box::new(blob)
    } else {
        let mut head = Vec::with_capacity(MAGIC_LEN);
        (&mut blob)
            .take(MAGIC_LEN as u64)
            .read_to_end(&mut head)
            .map_err(corrupt)?;
        Box::new(BufReader::new(io::Cursor::new(head).chain(blob)))
    };
    let head = reader.fill_buf().map_err(corrupt)?;
    let magic = &head[..head.len().min(MAGIC_LEN)];
    let decoder: Box<dyn Read + 'b> = if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(reader))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(super::zstd::frames(reader).map_err(corrupt)?)
    } else {
        Box::new(reader)
    };
    let mut archive = tar::Archive::new(HashingReader::new(decoder));
    let mut writer = LayerWriter {
        what,
        root: dest.to_path_buf(),
        lowers,
        dir_times: Vec::new(),
        buf: vec![0; COPY_BUF],
    };
    for entry in archive.entries().map_err(corrupt)? {
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::backend(
                "image store",
                format!("unpacking {what} was cancelled"),
            ));
        }
        writer.apply(entry.map_err(corrupt)?)?;
    }
    writer.finish()?;
    archive.into_inner().finish().map_err(corrupt)
}

/// Metadata of one entry, with PAX overrides applied.
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: (i64, u32),
    xattrs: Vec<(String, Vec<u8>)>,
}

struct LayerWriter<'a> {
    what: &'a str,
    root: PathBuf,
    lowers: &'a Lowers<'a>,
    /// Directory mtimes, applied last: writing into a directory changes its mtime.
    dir_times: Vec<(PathBuf, (i64, u32))>,
    /// File contents pass through here: a large buffer makes few large writes (the
    /// 8 KiB of `io::copy` made a large layer cost thousands of syscalls per file).
    buf: Vec<u8>,
}

impl LayerWriter<'_> {
    fn corrupt(&self, message: String) -> Error {
        Error::DataLoss {
            what: self.what.to_string(),
            message,
        }
    }

    fn apply<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<()> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let raw = entry
            .path()
            .map_err(|e| self.corrupt(format!("bad entry name: {e}")))?
            .into_owned();
        let meta = self.meta(&mut entry)?;
        let Some(rel) = self.clean(&raw)? else {
            // The layer root itself ("./"): only its metadata matters.
            if kind == EntryType::Directory {
                let root = self.root.clone();
                self.set_meta(&root, &meta, true)?;
            }
            return Ok(());
        };
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = self.parent_dir(&rel)?;
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            return self.whiteout(&parent, &name, hidden, &meta);
        }
        self.write(kind, &mut entry, &rel, &parent.join(&name), &meta)
    }

    /// Makes `path` the layer's entry `rel` of `kind`: its content, then its metadata.
    fn write<R: Read>(
        &mut self,
        kind: EntryType,
        entry: &mut tar::Entry<'_, R>,
        rel: &Path,
        path: &Path,
        meta: &Meta,
    ) -> Result<()> {
        let ctx = || format!("unpacking {}", path.display());
        match kind {
            EntryType::Directory => {
                let is_dir = path.symlink_metadata().map(|m| m.is_dir()).unwrap_or(false);
                if !is_dir {
                    remove_any(path).io_context(ctx)?;
                    fs::create_dir(path).io_context(ctx)?;
                }
                self.set_meta(path, meta, true)?;
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                remove_any(path).io_context(ctx)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(path)
                    .io_context(ctx)?;
                let (mut written, mut flushed) = (0u64, 0u64);
                loop {
                    let n = match entry.read(&mut self.buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            return Err(self.corrupt(format!("reading {}: {e}", rel.display())))
                        }
                    };
                    // A write that fails is the node's disk, not the layer's data.
                    file.write_all(&self.buf[..n]).io_context(ctx)?;
                    written += n as u64;
                    if written - flushed >= WRITEBACK_STEP {
                        start_writeback(&file, flushed, written - flushed);
                        flushed = written;
                    }
                }
                if written > flushed {
                    start_writeback(&file, flushed, written - flushed);
                }
                drop(file);
                self.set_meta(path, meta, false)?;
            }
            EntryType::Symlink => {
                let target = self.link_name(entry)?;
                remove_any(path).io_context(ctx)?;
                // Stored verbatim (absolute targets included) and never followed here.
                symlink(&target, path).io_context(ctx)?;
                self.set_meta(path, meta, false)?;
            }
            EntryType::Link => {
                let target = self.clean(&self.link_name(entry)?)?.ok_or_else(|| {
                    self.corrupt(format!(
                        "hard link {} points at the layer root",
                        rel.display()
                    ))
                })?;
                let source = self.link_source(&target)?;
                if source != path {
                    remove_any(path).io_context(ctx)?;
                    fs::hard_link(&source, path).io_context(ctx)?;
                }
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let special = match kind {
                    EntryType::Char => Special::Char,
                    EntryType::Block => Special::Block,
                    _ => Special::Fifo,
                };
                let header = entry.header();
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                remove_any(path).io_context(ctx)?;
                mknod(path, special, meta.mode, major, minor).io_context(ctx)?;
                self.set_meta(path, meta, false)?;
            }
            other => {
                tracing::debug!(layer = self.what, entry = %rel.display(), kind = ?other, "skipping tar entry")
            }
        }
        Ok(())
    }

    fn whiteout(&mut self, parent: &Path, name: &str, hidden: &str, meta: &Meta) -> Result<()> {
        if name == OPAQUE_MARKER {
            return lsetxattr(parent, OPAQUE_XATTR, b"y")
                .io_context(|| format!("marking {} opaque", parent.display()));
        }
        if hidden.starts_with(WHITEOUT_PREFIX) || hidden.is_empty() {
            // Other `.wh..wh.` entries are aufs metadata overlayfs has no use for.
            return Ok(());
        }
        let path = parent.join(hidden);
        let ctx = || format!("creating whiteout {}", path.display());
        remove_any(&path).io_context(ctx)?;
        mknod(&path, Special::Char, 0, 0, 0).io_context(ctx)?;
        std::os::unix::fs::lchown(&path, Some(meta.uid as u32), Some(meta.gid as u32))
            .io_context(ctx)
    }

    /// Owner, mode, xattrs, then times (chown clears setuid bits, so it goes first).
    fn set_meta(&mut self, path: &Path, meta: &Meta, is_dir: bool) -> Result<()> {
        let ctx = || format!("setting metadata of {}", path.display());
        std::os::unix::fs::lchown(path, Some(meta.uid as u32), Some(meta.gid as u32))
            .io_context(ctx)?;
        let is_symlink = path
            .symlink_metadata()
            .map(|m| m.file_type().is_symlink())
            .io_context(ctx)?;
        if !is_symlink {
            fs::set_permissions(path, fs::Permissions::from_mode(meta.mode & 0o7777))
                .io_context(ctx)?;
        }
        for (name, value) in &meta.xattrs {
            if let Err(e) = lsetxattr(path, name, value) {
                // A filesystem without that namespace loses the attribute, as with containerd.
                if e.raw_os_error() == Some(libc::ENOTSUP) {
                    tracing::warn!(path = %path.display(), xattr = %name, "xattr not supported here");
                } else {
                    return Err(Error::io(
                        format!("setting xattr {name} on {}", path.display()),
                        e,
                    ));
                }
            }
        }
        if is_dir {
            self.dir_times.push((path.to_path_buf(), meta.mtime));
            Ok(())
        } else {
            set_times(path, meta.mtime.0, meta.mtime.1).io_context(ctx)
        }
    }

    fn finish(&mut self) -> Result<()> {
        for (path, (secs, nanos)) in self.dir_times.drain(..).rev() {
            set_times(&path, secs, nanos)
                .io_context(|| format!("setting mtime of {}", path.display()))?;
        }
        Ok(())
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>) -> Result<Meta> {
        let header = entry.header();
        let bad = |e: io::Error| self.corrupt(format!("bad tar header: {e}"));
        let old = header.as_old();
        let mut meta = Meta {
            mode: numeric(header.mode().map(u64::from), &old.mode).map_err(bad)? as u32,
            uid: numeric(header.uid(), &old.uid).map_err(bad)?,
            gid: numeric(header.gid(), &old.gid).map_err(bad)?,
            mtime: (numeric(header.mtime(), &old.mtime).map_err(bad)? as i64, 0),
            xattrs: Vec::new(),
        };
        if let Some(extensions) = entry.pax_extensions().map_err(bad)? {
            for ext in extensions {
                let ext = ext.map_err(bad)?;
                let Ok(key) = ext.key() else { continue };
                let value = ext.value().unwrap_or_default();
                match key {
                    "uid" => meta.uid = value.parse().unwrap_or(meta.uid),
                    "gid" => meta.gid = value.parse().unwrap_or(meta.gid),
                    "mtime" => meta.mtime = parse_pax_time(value).unwrap_or(meta.mtime),
                    _ => {
                        if let Some(name) = key.strip_prefix(XATTR_PAX_PREFIX) {
                            meta.xattrs
                                .push((name.to_string(), ext.value_bytes().to_vec()));
                        }
                    }
                }
            }
        }
        Ok(meta)
    }

    fn link_name<R: Read>(&self, entry: &tar::Entry<'_, R>) -> Result<PathBuf> {
        match entry.link_name() {
            Ok(Some(target)) => Ok(target.into_owned()),
            Ok(None) => Err(self.corrupt("link entry without a target".into())),
            Err(e) => Err(self.corrupt(format!("bad link target: {e}"))),
        }
    }

    /// `raw` relative to the layer root; `None` for the root itself. `..` is refused.
    fn clean(&self, raw: &Path) -> Result<Option<PathBuf>> {
        let mut out = PathBuf::new();
        for component in raw.components() {
            match component {
                Component::Normal(part) => out.push(part),
                Component::CurDir | Component::RootDir => {}
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(self.corrupt(format!("entry {} escapes the layer", raw.display())));
                }
            }
        }
        Ok((!out.as_os_str().is_empty()).then_some(out))
    }

    /// The directory that will hold `rel`, created as needed; never through a symlink.
    fn parent_dir(&self, rel: &Path) -> Result<PathBuf> {
        let mut dir = self.root.clone();
        for part in rel.parent().into_iter().flat_map(Path::components) {
            dir.push(part);
            match dir.symlink_metadata() {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(
                        self.corrupt(format!("entry {} goes through a symlink", rel.display()))
                    );
                }
                Ok(_) => {
                    return Err(
                        self.corrupt(format!("a parent of {} is not a directory", rel.display()))
                    )
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&dir)
                        .and_then(|()| fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)))
                        .io_context(|| format!("creating {}", dir.display()))?;
                }
                Err(e) => return Err(Error::io(format!("inspecting {}", dir.display()), e)),
            }
        }
        Ok(dir)
    }

    /// The file a hard link to `target` links to: in this layer, or copied up from
    /// the topmost parent layer that has it.
    fn link_source(&self, target: &Path) -> Result<PathBuf> {
        let missing = || {
            self.corrupt(format!(
                "hard link target {} is not in the image",
                target.display()
            ))
        };
        let here = self
            .parent_dir(target)?
            .join(target.file_name().ok_or_else(missing)?);
        if here.symlink_metadata().is_ok() {
            return Ok(here);
        }
        (self.lowers.wait)()?;
        for lower in self.lowers.dirs {
            let candidate = lower.join(target);
            let Ok(meta) = candidate.symlink_metadata() else {
                continue;
            };
            if !meta.is_file() || !no_symlink_parents(lower, target) {
                break;
            }
            fs::copy(&candidate, &here)
                .io_context(|| format!("copying up {}", candidate.display()))?;
            std::os::unix::fs::lchown(
                &here,
                Some(std::os::unix::fs::MetadataExt::uid(&meta)),
                Some(std::os::unix::fs::MetadataExt::gid(&meta)),
            )
            .and_then(|()| fs::set_permissions(&here, meta.permissions()))
            .io_context(|| format!("copying up {}", candidate.display()))?;
            return Ok(here);
        }
        Err(missing())
    }
}

/// True when no directory on the way to `rel` under `root` is a symlink.
fn no_symlink_parents(root: &Path, rel: &Path) -> bool {
    let mut dir = root.to_path_buf();
    rel.parent()
        .into_iter()
        .flat_map(Path::components)
        .all(|part| {
            dir.push(part);
            dir.symlink_metadata().is_ok_and(|m| m.is_dir())
        })
}

/// Removes whatever is at `path` (a directory with its contents); absent is fine.
fn remove_any(path: &Path) -> io::Result<()> {
    match path.symlink_metadata() {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A numeric header field; an empty one (all NUL or spaces) is 0, as Go's
/// archive/tar reads it.
fn numeric(parsed: io::Result<u64>, raw: &[u8]) -> io::Result<u64> {
    parsed.or_else(|e| {
        if raw.iter().all(|&b| b == 0 || b == b' ') {
            Ok(0)
        } else {
            Err(e)
        }
    })
}

/// `1700000000.123456789` → (seconds, nanoseconds).
fn parse_pax_time(value: &str) -> Option<(i64, u32)> {
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let secs = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let nanos = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().ok()?
    };
    Some((secs, nanos))
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
