//! Registry settings: mirrors, plain-http hosts and credentials (the `registries`
//! section of berth's config), and the endpoints a pull tries in order.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};
use crate::types::RegistryAuth;

/// How berth reaches registries. Embedded as is in the agent's YAML config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// Registry host → mirror endpoints tried in order before the host itself
    /// (containerd's `registry.mirrors`). An endpoint is `http://host[:port]` (plain
    /// HTTP), `https://host[:port]`, or `host[:port]` (HTTPS unless listed in
    /// `insecure`). A mirror keeps the repository path. The key `*` applies to every
    /// registry without an entry of its own.
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// Hosts (`host[:port]`) spoken to over plain HTTP instead of HTTPS.
    pub insecure: Vec<String>,
    /// Host (`host[:port]`, a registry or a mirror endpoint) → credentials used when
    /// the pull request carries none: `username`/`password`, `auth`
    /// (base64 `user:password`), `identity_token` or `registry_token`.
    #[serde(deserialize_with = "partial_credentials")]
    pub credentials: BTreeMap<String, RegistryAuth>,
    /// Layers downloaded (each streamed into its unpack) at once, over all pulls
    /// (containerd's `max_concurrent_downloads`): a node's cores decompress, and more
    /// streams than that only share them and the link while holding more memory.
    pub max_concurrent_downloads: usize,
}

/// The default of `max_concurrent_downloads`, containerd's too: enough to keep a
/// link busy while one layer's unpack waits on the disk, few enough for two cores.
pub const DEFAULT_MAX_CONCURRENT_DOWNLOADS: usize = 3;

/// More than this is a typo, not a tuning: each layer in flight holds a connection,
/// a thread and its buffers.
const MAX_CONCURRENT_DOWNLOADS: usize = 64;

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            mirrors: BTreeMap::new(),
            insecure: Vec::new(),
            credentials: BTreeMap::new(),
            max_concurrent_downloads: DEFAULT_MAX_CONCURRENT_DOWNLOADS,
        }
    }
}

/// One place a pull may fetch from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// `host[:port]` as it goes into URLs.
    pub host: String,
    /// True for plain HTTP.
    pub plain_http: bool,
    /// True for a mirror, false for the image's own registry.
    pub mirror: bool,
}

impl Endpoint {
    /// `mirror http://127.0.0.1:5000` / `registry docker.io`, for messages.
    pub(crate) fn describe(&self) -> String {
        let scheme = if self.plain_http { "http" } else { "https" };
        let kind = if self.mirror { "mirror" } else { "registry" };
        format!("{kind} {scheme}://{}", self.host)
    }
}

impl RegistryConfig {
    /// Checks every mirror endpoint and host name; the error names the bad entry.
    pub fn validate(&self) -> Result<()> {
        if !(1..=MAX_CONCURRENT_DOWNLOADS).contains(&self.max_concurrent_downloads) {
            return Err(Error::InvalidSpec(format!(
                "registries.max_concurrent_downloads: {} is not between 1 and {MAX_CONCURRENT_DOWNLOADS}",
                self.max_concurrent_downloads
            )));
        }
        for (host, endpoints) in &self.mirrors {
            if host.is_empty() || host.contains('/') {
                return Err(Error::InvalidSpec(format!(
                    "registries.mirrors: {host:?} is not a registry host"
                )));
            }
            for endpoint in endpoints {
                self.parse_endpoint(endpoint).map_err(|why| {
                    Error::InvalidSpec(format!(
                        "registries.mirrors.{host}: endpoint {endpoint:?} {why}"
                    ))
                })?;
            }
        }
        for host in self.insecure.iter().chain(self.credentials.keys()) {
            if host.is_empty() || host.contains('/') {
                return Err(Error::InvalidSpec(format!(
                    "registries: {host:?} is not a host[:port]"
                )));
            }
        }
        Ok(())
    }

    /// The endpoints a pull from `domain` tries, in order: its mirrors (or those of
    /// `*`), then the registry itself.
    pub(crate) fn endpoints(&self, domain: &str) -> Vec<Endpoint> {
        let mirrors = self
            .mirrors
            .get(domain)
            .or_else(|| self.mirrors.get("*"))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut out: Vec<Endpoint> = mirrors
            .iter()
            .filter_map(|e| self.parse_endpoint(e).ok())
            .collect();
        out.push(Endpoint {
            host: domain.to_string(),
            plain_http: self.insecure.iter().any(|h| h == domain),
            mirror: false,
        });
        out
    }

    /// The configured credentials for `host`, if any.
    pub(crate) fn credentials_for(&self, host: &str) -> Option<&RegistryAuth> {
        self.credentials.get(host)
    }

    fn parse_endpoint(&self, endpoint: &str) -> Result<Endpoint, String> {
        let (scheme, rest) = match endpoint.split_once("://") {
            Some((scheme, rest)) => (Some(scheme), rest),
            None => (None, endpoint),
        };
        let plain_http = match scheme {
            Some("http") => true,
            Some("https") => false,
            Some(other) => return Err(format!("has scheme {other:?} (want http or https)")),
            None => self
                .insecure
                .iter()
                .any(|h| h == rest.trim_end_matches('/')),
        };
        // containerd accepts a trailing `/v2`; the path is implied by the protocol.
        let host = rest.trim_end_matches('/').trim_end_matches("/v2");
        if host.is_empty() || host.contains(['/', '?', '#', '@']) {
            return Err("must be scheme://host[:port] without a path".into());
        }
        Ok(Endpoint {
            host: host.to_string(),
            plain_http,
            mirror: true,
        })
    }
}

/// Credentials in config may name only the fields they use.
fn partial_credentials<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, RegistryAuth>, D::Error> {
    #[derive(Deserialize)]
    #[serde(default, deny_unknown_fields)]
    #[derive(Default)]
    struct Partial {
        username: String,
        password: String,
        auth: String,
        identity_token: String,
        registry_token: String,
    }
    let map = BTreeMap::<String, Partial>::deserialize(deserializer)?;
    Ok(map
        .into_iter()
        .map(|(host, p)| {
            let auth = RegistryAuth {
                username: p.username,
                password: p.password,
                auth: p.auth,
                identity_token: p.identity_token,
                registry_token: p.registry_token,
            };
            (host, auth)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: serde_json::Value) -> RegistryConfig {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn mirrors_come_first_then_the_registry() {
        let c = config(serde_json::json!({
            "mirrors": {"docker.io": ["http://127.0.0.1:5000", "mirror.example:443/v2/"], "*": ["https://all"]},
            "insecure": ["127.0.0.1:6000"],
        }));
        c.validate().unwrap();
        let hosts: Vec<_> = c
            .endpoints("docker.io")
            .iter()
            .map(Endpoint::describe)
            .collect();
        assert_eq!(
            hosts,
            [
                "mirror http://127.0.0.1:5000",
                "mirror https://mirror.example:443",
                "registry https://docker.io"
            ]
        );
        let hosts: Vec<_> = c
            .endpoints("127.0.0.1:6000")
            .iter()
            .map(Endpoint::describe)
            .collect();
        assert_eq!(
            hosts,
            ["mirror https://all", "registry http://127.0.0.1:6000"]
        );
    }

    #[test]
    fn credentials_may_be_partial_and_unknown_fields_are_refused() {
        let c =
            config(serde_json::json!({"credentials": {"h:1": {"username": "u", "password": "p"}}}));
        assert_eq!(c.credentials_for("h:1").unwrap().username, "u");
        assert!(c.credentials_for("other").is_none());
        let err = serde_json::from_value::<RegistryConfig>(serde_json::json!({"mirror": {}}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("mirror"), "{err}");
        let err = serde_json::from_value::<RegistryConfig>(
            serde_json::json!({"credentials": {"h": {"user": "u"}}}),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("user"), "{err}");
    }

    #[test]
    fn bad_endpoints_are_named() {
        for bad in ["ftp://x", "http://x/path", "http://"] {
            let c = config(serde_json::json!({"mirrors": {"docker.io": [bad]}}));
            match c.validate() {
                Err(Error::InvalidSpec(m)) => assert!(m.contains(bad), "{m}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn concurrent_downloads_default_to_three_and_stay_in_bounds() {
        assert_eq!(config(serde_json::json!({})).max_concurrent_downloads, 3);
        config(serde_json::json!({"max_concurrent_downloads": 1}))
            .validate()
            .unwrap();
        for bad in [0, 65] {
            let c = config(serde_json::json!({"max_concurrent_downloads": bad}));
            match c.validate() {
                Err(Error::InvalidSpec(m)) => {
                    assert!(m.contains("max_concurrent_downloads"), "{m}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
