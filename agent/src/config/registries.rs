//! The `registries` section of the config.
//!
//! TODO(integration): replace this module with `runtimes::image::RegistryConfig`
//! (`pub use runtimes::image::RegistryConfig;` in `config/mod.rs`). It has exactly the
//! shape below (the config contract), so config files do not change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How images are fetched: mirrors, plain-http hosts and credentials per registry host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Registry host → endpoints tried in order before the host itself, e.g.
    /// `docker.io: ["http://127.0.0.1:5000"]`. A mirror keeps the repository path.
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// Hosts (`host[:port]`) spoken to over plain http.
    pub insecure: Vec<String>,
    /// Registry host → credentials, used when a pull request carries none.
    pub credentials: BTreeMap<String, RegistryCredentials>,
}

/// Credentials for one registry host: a user name and password, or `auth`, or an
/// identity token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryCredentials {
    /// User name for basic auth.
    pub username: String,
    /// Password for basic auth.
    pub password: String,
    /// `base64(username:password)`, as Docker's config.json stores it.
    pub auth: String,
    /// A refresh token to exchange for bearer tokens.
    pub identity_token: String,
}
