//! Integration tests of the image store against a real registry (Debian's
//! `docker-registry`), a counting proxy and a hand-written lying registry. They run
//! as root (unpacking sets owners, device nodes and `trusted.*` xattrs), as CI does.

mod crash;
mod errors;
mod images;
mod pull;
mod remove;
mod servers;
mod youki;

use std::path::Path;

use runtimes::image::{ImageStore, RegistryConfig};
use runtimes::types::{PullRequest, RegistryAuth};

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

/// Fails loudly when not root: these tests are meant to run, not to be skipped.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the image store tests unpack layers with owners, devices and trusted xattrs: run as root"
    );
}

/// A store at `root` with `config` given as JSON (the YAML config's shape).
pub fn open(root: &Path, config: serde_json::Value) -> ImageStore {
    require_root();
    let config: RegistryConfig = serde_json::from_value(config).expect("registry config");
    ImageStore::open(root, config).expect("open the image store")
}

/// A store that talks plain http to `hosts`.
pub fn open_insecure(root: &Path, hosts: &[&str]) -> ImageStore {
    open(root, serde_json::json!({ "insecure": hosts }))
}

/// A pull request without credentials.
pub fn req(reference: &str) -> PullRequest {
    PullRequest {
        reference: reference.to_string(),
        auth: None,
    }
}

/// A pull request with credentials.
pub fn req_auth(reference: &str, auth: RegistryAuth) -> PullRequest {
    PullRequest {
        reference: reference.to_string(),
        auth: Some(auth),
    }
}

/// Names in `dir` (empty when it does not exist).
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

/// Asserts the store keeps no content at all: no blobs, layers or temp files.
pub fn assert_empty(root: &Path) {
    for dir in ["blobs/sha256", "layers", "tmp"] {
        assert_eq!(
            names(&root.join(dir)),
            Vec::<String>::new(),
            "{dir} should be empty"
        );
    }
}
