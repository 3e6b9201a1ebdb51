//! Integration tests of the image store against a real registry (Debian's
//! `docker-registry`), a counting proxy and a hand-written lying registry (all from
//! `berth-testkit`). They run as root (unpacking sets owners, device nodes and
//! `trusted.*` xattrs), as CI does.

mod crash;
mod errors;
mod pull;
mod remove;

use std::path::Path;

pub use berth_testkit::{assert_empty, host_arch, names, other_arch};

use runtimes::image::{ImageStore, RegistryConfig};
use runtimes::types::{PullRequest, RegistryAuth};

/// Fails loudly when not root (the testkit's policy: required, never skipped).
pub fn require_root() {
    berth_testkit::require::root(
        "the image store tests unpack layers with owners, devices and trusted xattrs",
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
