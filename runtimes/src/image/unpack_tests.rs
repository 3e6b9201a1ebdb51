//! Unpacking real tar streams (built here) into real directories. Needs root:
//! ownership, device nodes and `trusted.*` xattrs are what overlayfs relies on.

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use tar::{EntryType, Header};

use super::super::digest::sha256;
use super::super::unpack_fs::lgetxattr;
use super::{unpack, Lowers};
use crate::error::Error;

fn require_root() {
    berth_testkit::require::root("unpack tests create device nodes and trusted.* xattrs");
}

fn header(kind: EntryType, size: u64, mode: u32) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h
}

/// Appends an entry whose name is written raw, so hostile names (`..`) survive.
fn raw(b: &mut tar::Builder<Vec<u8>>, name: &str, mut h: Header, link: Option<&str>, data: &[u8]) {
    let gnu = h.as_gnu_mut().unwrap();
    gnu.name = [0; 100];
    gnu.name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(link) = link {
        gnu.linkname = [0; 100];
        gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_cksum();
    b.append(&h, data).unwrap();
}

fn file(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
    raw(
        b,
        name,
        header(EntryType::Regular, data.len() as u64, 0o644),
        None,
        data,
    );
}

fn dir(b: &mut tar::Builder<Vec<u8>>, name: &str, mode: u32) {
    raw(b, name, header(EntryType::Directory, 0, mode), None, &[]);
}

fn symlink(b: &mut tar::Builder<Vec<u8>>, name: &str, target: &str) {
    raw(
        b,
        name,
        header(EntryType::Symlink, 0, 0o777),
        Some(target),
        &[],
    );
}

fn hardlink(b: &mut tar::Builder<Vec<u8>>, name: &str, target: &str) {
    raw(
        b,
        name,
        header(EntryType::Link, 0, 0o644),
        Some(target),
        &[],
    );
}

fn tar_of(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    build(&mut b);
    b.into_inner().unwrap()
}

struct Unpacked {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    result: crate::Result<String>,
}

fn unpack_with(blob_bytes: &[u8], lowers: &[PathBuf]) -> Unpacked {
    let tmp = tempfile::tempdir().unwrap();
    let blob = tmp.path().join("blob");
    std::fs::write(&blob, blob_bytes).unwrap();
    let root = tmp.path().join("layer");
    std::fs::create_dir(&root).unwrap();
    let lowers = Lowers {
        dirs: lowers,
        wait: &|| Ok(()),
    };
    let result = unpack(
        "layer test",
        std::io::BufReader::new(std::fs::File::open(&blob).unwrap()),
        &root,
        &lowers,
        &AtomicBool::new(false),
    );
    Unpacked {
        _tmp: tmp,
        root,
        result,
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn files_links_devices_and_metadata_are_kept() {
    require_root();
    let tar = tar_of(|b| {
        dir(b, "./", 0o755);
        dir(b, "etc/", 0o750);
        let mut h = header(EntryType::Regular, 5, 0o4755);
        h.set_uid(1000);
        h.set_gid(2000);
        h.set_mtime(1_234_567_890);
        raw(b, "etc/tool", h, None, b"hello");
        hardlink(b, "etc/hard", "etc/tool");
        symlink(b, "etc/abs", "/etc/passwd");
        let mut null = header(EntryType::Char, 0, 0o666);
        null.set_device_major(1).unwrap();
        null.set_device_minor(3).unwrap();
        raw(b, "dev/null", null, None, &[]);
        raw(b, "run/fifo", header(EntryType::Fifo, 0, 0o600), None, &[]);
        let mut pax = header(EntryType::Regular, 4, 0o600);
        b.append_pax_extensions([("SCHILY.xattr.user.berth", b"yes".as_slice())])
            .unwrap();
        pax.set_mtime(1);
        raw(b, "etc/attr", pax, None, b"data");
    });
    for (label, blob) in [("plain", tar.clone()), ("gzip", gzip(&tar))] {
        let u = unpack_with(&blob, &[]);
        assert_eq!(
            u.result.as_ref().unwrap(),
            &sha256(&tar),
            "{label}: diff id is the tar's digest"
        );
        let tool = std::fs::symlink_metadata(u.root.join("etc/tool")).unwrap();
        assert_eq!(
            (tool.uid(), tool.gid(), tool.mode() & 0o7777),
            (1000, 2000, 0o4755)
        );
        assert_eq!(tool.mtime(), 1_234_567_890);
        assert_eq!(std::fs::read(u.root.join("etc/tool")).unwrap(), b"hello");
        assert_eq!(
            std::fs::metadata(u.root.join("etc/hard")).unwrap().ino(),
            tool.ino()
        );
        assert_eq!(
            std::fs::read_link(u.root.join("etc/abs")).unwrap(),
            Path::new("/etc/passwd")
        );
        let etc = std::fs::metadata(u.root.join("etc")).unwrap();
        assert_eq!((etc.mode() & 0o7777, etc.mtime()), (0o750, 1_600_000_000));
        let null = std::fs::symlink_metadata(u.root.join("dev/null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), libc::makedev(1, 3));
        assert!(std::fs::symlink_metadata(u.root.join("run/fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
        assert_eq!(
            lgetxattr(&u.root.join("etc/attr"), "user.berth").unwrap(),
            b"yes"
        );
    }
}

#[test]
fn zstd_layers_unpack() {
    require_root();
    let tar = tar_of(|b| file(b, "z", b"zstd"));
    let zstd = zstd::stream::encode_all(&tar[..], 3).unwrap();
    let u = unpack_with(&zstd, &[]);
    assert_eq!(u.result.unwrap(), sha256(&tar));
    assert_eq!(std::fs::read(u.root.join("z")).unwrap(), b"zstd");
}

#[test]
fn a_blob_handed_over_a_byte_at_a_time_unpacks() {
    require_root();
    // Every kind of blob through a reader whose buffer holds one byte: the magic
    // number arrives in pieces.
    let tar = tar_of(|b| file(b, "f", b"pieces"));
    let zstd = zstd::stream::encode_all(&tar[..], 3).unwrap();
    for blob in [gzip(&tar), zstd, tar.clone()] {
        let tmp = tempfile::tempdir().unwrap();
        let lowers = Lowers {
            dirs: &[],
            wait: &|| Ok(()),
        };
        let diff_id = unpack(
            "layer",
            std::io::BufReader::with_capacity(1, &blob[..]),
            tmp.path(),
            &lowers,
            &AtomicBool::new(false),
        )
        .unwrap();
        assert_eq!(diff_id, sha256(&tar));
        assert_eq!(std::fs::read(tmp.path().join("f")).unwrap(), b"pieces");
    }
}

#[test]
fn whiteouts_become_char_devices_and_opaque_dirs_get_the_xattr() {
    require_root();
    let tar = tar_of(|b| {
        dir(b, "a/", 0o755);
        file(b, "a/.wh.gone", b"");
        dir(b, "b/", 0o755);
        file(b, "b/.wh..wh..opq", b"");
        file(b, "b/kept", b"k");
        file(b, ".wh..wh.plnk", b"");
    });
    let u = unpack_with(&tar, &[]);
    u.result.unwrap();
    let gone = std::fs::symlink_metadata(u.root.join("a/gone")).unwrap();
    assert!(gone.file_type().is_char_device());
    assert_eq!(gone.rdev(), 0);
    assert!(!u.root.join("a/.wh.gone").exists());
    assert_eq!(
        lgetxattr(&u.root.join("b"), "trusted.overlay.opaque").unwrap(),
        b"y"
    );
    assert!(u.root.join("b/kept").exists() && !u.root.join("b/.wh..wh..opq").exists());
    assert!(!u.root.join(".wh..wh.plnk").exists());
}

#[test]
fn entries_never_escape_the_layer() {
    require_root();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_str().unwrap().to_string();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dot-dot file", tar_of(|b| file(b, "../escape", b"x"))),
        (
            "nested dot-dot",
            tar_of(|b| file(b, "a/../../escape", b"x")),
        ),
        (
            "through an absolute symlink",
            tar_of(|b| {
                symlink(b, "s", &target);
                file(b, "s/escape", b"x");
            }),
        ),
        (
            "through a relative symlink",
            tar_of(|b| {
                symlink(b, "up", "..");
                file(b, "up/escape", b"x");
            }),
        ),
        (
            "hard link out",
            tar_of(|b| hardlink(b, "h", "../../etc/passwd")),
        ),
        (
            "hard link through a symlink",
            tar_of(|b| {
                symlink(b, "s", &target);
                hardlink(b, "h", "s/secret");
            }),
        ),
    ];
    std::fs::write(outside.path().join("secret"), b"s").unwrap();
    for (label, tar) in cases {
        let u = unpack_with(&tar, &[]);
        match &u.result {
            Err(Error::DataLoss { what, message }) => {
                assert_eq!(what, "layer test", "{label}: {message}")
            }
            other => panic!("{label}: {other:?}"),
        }
        assert!(
            !outside.path().join("escape").exists(),
            "{label} wrote outside"
        );
        assert!(
            !u.root.parent().unwrap().join("escape").exists(),
            "{label} wrote beside the layer"
        );
        assert!(!u.root.join("h").exists(), "{label} linked outside");
    }
}

#[test]
fn hard_links_to_lower_layers_copy_the_file_up() {
    require_root();
    let lower = tempfile::tempdir().unwrap();
    std::fs::create_dir(lower.path().join("bin")).unwrap();
    std::fs::write(lower.path().join("bin/tool"), b"lower").unwrap();
    let tar = tar_of(|b| hardlink(b, "bin/alias", "bin/tool"));
    let u = unpack_with(&tar, &[lower.path().to_path_buf()]);
    u.result.unwrap();
    let alias = std::fs::metadata(u.root.join("bin/alias")).unwrap();
    assert_eq!(std::fs::read(u.root.join("bin/alias")).unwrap(), b"lower");
    assert_eq!(
        alias.ino(),
        std::fs::metadata(u.root.join("bin/tool")).unwrap().ino()
    );
    let missing = tar_of(|b| hardlink(b, "x", "nowhere"));
    assert!(matches!(
        unpack_with(&missing, &[]).result,
        Err(Error::DataLoss { .. })
    ));
}

#[test]
fn garbage_is_data_loss_and_cancel_stops() {
    require_root();
    let u = unpack_with(
        &gzip(b"not a tar at all, but long enough to fill a header block"),
        &[],
    );
    assert!(
        matches!(u.result, Err(Error::DataLoss { .. })),
        "{:?}",
        u.result
    );
    let tmp = tempfile::tempdir().unwrap();
    let blob = tmp.path().join("blob");
    std::fs::write(&blob, tar_of(|b| file(b, "f", b"x"))).unwrap();
    let lowers = Lowers {
        dirs: &[],
        wait: &|| Ok(()),
    };
    let result = unpack(
        "layer",
        std::io::BufReader::new(std::fs::File::open(&blob).unwrap()),
        tmp.path(),
        &lowers,
        &AtomicBool::new(true),
    );
    assert!(matches!(result, Err(Error::Backend { .. })), "{result:?}");
}
