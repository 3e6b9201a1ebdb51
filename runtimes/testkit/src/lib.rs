//! What berth's integration tests share: Debian's real `docker-registry` on a free
//! loopback port, a counting and throttling proxy in front of it, a hand-written
//! registry that can lie, images built and pushed by the test itself, and the host
//! inspection and clean-up of tests that run pods.
//!
//! Used by the runtimes crate's tests and by the black-box and streaming tests of the
//! `berth` binary (`agent/tests`), which also drive the real crictl ([`crictl`]), on a
//! terminal when they need one ([`pty`]). The containerd backend's tests run a
//! containerd of their own ([`containerd`]). Test code: it panics on failure.
//!
//! # Tests that need the host
//!
//! One policy for every test in the workspace: a test that needs root, IPv6 on
//! loopback or a kernel feature *requires* it. It calls [`require`] first and fails,
//! naming what is missing, on a host without it; no test returns early and passes, and
//! none is `#[ignore]`d for want of a capability. CI runs the tests as root with `::1`
//! on loopback, where all of them must run; a skip there would hide a regression. To
//! run the tests that need nothing, filter them by name (`cargo test -p runtimes --lib
//! image::reference`).

#![warn(missing_docs)]

pub mod containerd;
pub mod crictl;
pub mod host;
pub mod images;
pub mod nri_plugin;
pub mod pty;
pub mod require;
pub mod servers;

use std::path::Path;

/// The OCI architecture of this host.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => panic!("no test image for {other}"),
    }
}

/// An architecture this host does not run.
pub fn other_arch() -> &'static str {
    if host_arch() == "amd64" {
        "arm64"
    } else {
        "amd64"
    }
}

/// Names in `dir`, sorted (empty when it does not exist).
pub fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Asserts the image store at `root` keeps no content at all: no blobs, layers or
/// temp files.
pub fn assert_empty(root: &Path) {
    for dir in ["blobs/sha256", "layers", "tmp"] {
        assert_eq!(
            names(&root.join(dir)),
            Vec::<String>::new(),
            "{} should be empty",
            root.join(dir).display()
        );
    }
}
