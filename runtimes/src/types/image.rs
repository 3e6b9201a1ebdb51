//! Image values exchanged between the agent and the backends.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Credentials for one registry, from a CRI `AuthConfig` or berth's config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryAuth {
    /// User name for basic auth.
    pub username: String,
    /// Password for basic auth.
    pub password: String,
    /// `base64(username:password)`, as Docker's config.json stores it.
    pub auth: String,
    /// A refresh token to exchange for bearer tokens.
    pub identity_token: String,
    /// A bearer token to send as is.
    pub registry_token: String,
}

/// A request to pull one image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullRequest {
    /// The reference as the client wrote it (`busybox`, `registry.k8s.io/pause:3.9`,
    /// `name@sha256:…`); backends normalize it.
    pub reference: String,
    /// Credentials from the request; `None` falls back to the configured ones.
    pub auth: Option<RegistryAuth>,
}

/// The parts of an OCI image config a runtime needs to run the image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `os` of the image config, e.g. `linux`.
    pub os: String,
    /// `architecture` of the image config, e.g. `amd64`.
    pub architecture: String,
    /// `User` (`name`, `uid`, `uid:gid`, `name:group`), empty for root.
    pub user: String,
    /// `Env` as `KEY=value`.
    pub env: Vec<String>,
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: String,
    /// `StopSignal`, e.g. `SIGQUIT`.
    pub stop_signal: String,
    /// `Labels`.
    pub labels: BTreeMap<String, String>,
    /// `ExposedPorts` keys, e.g. `80/tcp`.
    pub exposed_ports: Vec<String>,
    /// `Volumes` keys.
    pub volumes: Vec<String>,
}

impl ImageConfig {
    /// The uid or user name of the image's `User`, as CRI's `ImageStatus` reports them:
    /// a numeric user gives `(Some(uid), "")`, a name gives `(None, name)`, no user gives
    /// `(Some(0), "")` — the image runs as root.
    pub fn uid_and_username(&self) -> (Option<i64>, String) {
        let user = self.user.split(':').next().unwrap_or_default();
        if user.is_empty() {
            return (Some(0), String::new());
        }
        match user.parse::<i64>() {
            Ok(uid) => (Some(uid), String::new()),
            Err(_) => (None, user.to_string()),
        }
    }
}

/// An image as a backend holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// The image id: the digest of its config blob (`sha256:…`).
    pub id: String,
    /// Normalized tagged references, e.g. `docker.io/library/busybox:latest`.
    pub repo_tags: Vec<String>,
    /// Normalized digested references, e.g. `docker.io/library/busybox@sha256:…`.
    pub repo_digests: Vec<String>,
    /// Total size of the image's compressed layers and config, in bytes.
    pub size: u64,
    /// The image config.
    pub config: ImageConfig,
    /// True when berth must not garbage-collect the image (the sandbox image).
    pub pinned: bool,
}

impl ImageInfo {
    /// `os/architecture`, for messages.
    pub fn platform(&self) -> String {
        format!("{}/{}", self.config.os, self.config.architecture)
    }
}

/// Usage of a filesystem that holds images or writable layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsUsage {
    /// When the numbers were read.
    pub timestamp: SystemTime,
    /// The directory whose filesystem this is.
    pub mountpoint: PathBuf,
    /// Bytes used by berth under `mountpoint`.
    pub used_bytes: u64,
    /// Inodes used by berth under `mountpoint`.
    pub inodes_used: u64,
}
