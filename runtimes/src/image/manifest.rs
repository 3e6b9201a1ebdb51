//! The registry documents a pull reads: manifests, indexes and image configs, parsed
//! leniently (Docker writes `null` where OCI omits), and platform selection.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::types::ImageConfig;

/// Docker v2 schema 2 manifest.
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest.
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// What a pull accepts from a registry.
pub(crate) const ACCEPTED: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// A content descriptor.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
}

/// `os/architecture[/variant]` of an index entry or a config.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub(crate) struct Platform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) if !v.is_empty() => write!(f, "/{v}"),
            _ => Ok(()),
        }
    }
}

impl Platform {
    /// The platform this binary was built for, in OCI (Go) terms.
    pub(crate) fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            other => other,
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: architecture.to_string(),
            variant: None,
        }
    }

    /// True when an image for `other` runs here: same OS and architecture, and a
    /// variant this host's baseline runs.
    pub(crate) fn runs(&self, other: &Platform) -> bool {
        let variant_ok = matches!(
            (self.architecture.as_str(), other.variant.as_deref()),
            (_, None | Some("")) | ("amd64", Some("v1")) | ("arm64", Some("v8"))
        );
        self.os == other.os && self.architecture == other.architecture && variant_ok
    }
}

/// A manifest or an index, told apart by media type or shape.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawManifest {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
}

/// A parsed registry document.
pub(crate) enum Document {
    /// A single-platform image manifest: config and layers, bottom first.
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    /// A manifest list or OCI index.
    Index(Vec<Descriptor>),
}

/// Parses manifest or index `bytes` fetched for `image`.
pub(crate) fn parse(image: &str, bytes: &[u8]) -> Result<Document> {
    let raw: RawManifest = serde_json::from_slice(bytes).map_err(|e| Error::DataLoss {
        what: format!("manifest of {image}"),
        message: format!("not a valid manifest: {e}"),
    })?;
    if raw.schema_version != 2 {
        return Err(Error::InvalidSpec(format!(
            "image {image} has a schema {} manifest; only schema 2 and OCI images are supported",
            raw.schema_version
        )));
    }
    match (
        raw.media_type.as_deref(),
        raw.manifests,
        raw.config,
        raw.layers,
    ) {
        (Some(DOCKER_LIST | OCI_INDEX) | None, Some(manifests), _, _) => {
            Ok(Document::Index(manifests))
        }
        (Some(DOCKER_MANIFEST | OCI_MANIFEST) | None, None, Some(config), Some(layers)) => {
            Ok(Document::Image { config, layers })
        }
        (media_type, ..) => Err(Error::InvalidSpec(format!(
            "image {image} has an unsupported manifest (media type {})",
            media_type.unwrap_or("none")
        ))),
    }
}

/// True for the layer media types of Docker and OCI images (any compression).
pub(crate) fn is_layer(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.oci.image.layer.v1.tar")
        || media_type.starts_with("application/vnd.docker.image.rootfs.diff.tar")
}

/// Picks the entry of an index that runs on `host`, or says which platforms exist.
pub(crate) fn select<'a>(
    image: &str,
    entries: &'a [Descriptor],
    host: &Platform,
) -> Result<&'a Descriptor> {
    entries
        .iter()
        .find(|e| e.platform.as_ref().is_some_and(|p| host.runs(p)))
        .ok_or_else(|| {
            let available: Vec<String> = entries
                .iter()
                .filter_map(|e| e.platform.as_ref().map(Platform::to_string))
                .collect();
            wrong_platform(image, &available.join(", "), host)
        })
}

/// The `WrongPlatform` error for `image` offered only for `platform`.
pub(crate) fn wrong_platform(image: &str, platform: &str, host: &Platform) -> Error {
    Error::WrongPlatform {
        image: image.to_string(),
        platform: if platform.is_empty() {
            "no platform".into()
        } else {
            platform.to_string()
        },
        backend: "image store".into(),
        supported: host.to_string(),
    }
}

/// The parts of an image config the store uses.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ConfigFile {
    pub architecture: String,
    pub os: String,
    pub variant: Option<String>,
    pub config: Option<RunConfig>,
    pub rootfs: RootFs,
}

/// `rootfs` of an image config.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RootFs {
    pub diff_ids: Vec<String>,
}

/// `config` of an image config (Docker's PascalCase keys).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub(crate) struct RunConfig {
    user: Option<String>,
    env: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    working_dir: Option<String>,
    stop_signal: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    volumes: Option<BTreeMap<String, serde_json::Value>>,
}

impl ConfigFile {
    /// Parses the config blob of `image`.
    pub(crate) fn parse(image: &str, bytes: &[u8]) -> Result<ConfigFile> {
        serde_json::from_slice(bytes).map_err(|e| Error::DataLoss {
            what: format!("image config of {image}"),
            message: format!("not a valid image config: {e}"),
        })
    }

    /// The config's platform.
    pub(crate) fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
        }
    }

    /// What the runtime needs from the config.
    pub(crate) fn image_config(&self) -> ImageConfig {
        let run = self.config.as_ref();
        let keys = |m: Option<&BTreeMap<String, serde_json::Value>>| {
            m.map(|m| m.keys().cloned().collect()).unwrap_or_default()
        };
        ImageConfig {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            user: run.and_then(|r| r.user.clone()).unwrap_or_default(),
            env: run.and_then(|r| r.env.clone()).unwrap_or_default(),
            entrypoint: run.and_then(|r| r.entrypoint.clone()).unwrap_or_default(),
            cmd: run.and_then(|r| r.cmd.clone()).unwrap_or_default(),
            working_dir: run.and_then(|r| r.working_dir.clone()).unwrap_or_default(),
            stop_signal: run.and_then(|r| r.stop_signal.clone()).unwrap_or_default(),
            labels: run.and_then(|r| r.labels.clone()).unwrap_or_default(),
            exposed_ports: keys(run.and_then(|r| r.exposed_ports.as_ref())),
            volumes: keys(run.and_then(|r| r.volumes.as_ref())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_nulls_and_pascal_case_are_read() {
        let json = br#"{"architecture":"amd64","os":"linux","config":{"User":"1000:1000","Env":["A=1"],
            "Entrypoint":null,"Cmd":["sh"],"WorkingDir":"/w","StopSignal":"SIGQUIT","Labels":{"k":"v"},
            "ExposedPorts":{"80/tcp":{}},"Volumes":{"/data":{}}},"rootfs":{"type":"layers","diff_ids":["sha256:a"]}}"#;
        let c = ConfigFile::parse("x", json).unwrap();
        let ic = c.image_config();
        assert_eq!(ic.user, "1000:1000");
        assert_eq!(ic.env, ["A=1"]);
        assert!(ic.entrypoint.is_empty());
        assert_eq!(ic.cmd, ["sh"]);
        assert_eq!(
            (ic.working_dir.as_str(), ic.stop_signal.as_str()),
            ("/w", "SIGQUIT")
        );
        assert_eq!(ic.exposed_ports, ["80/tcp"]);
        assert_eq!(ic.volumes, ["/data"]);
        assert_eq!(ic.labels.get("k").map(String::as_str), Some("v"));
        assert_eq!(c.rootfs.diff_ids, ["sha256:a"]);
    }

    #[test]
    fn index_selection_matches_os_arch_and_variant() {
        let host = Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: None,
        };
        let entry = |arch: &str, variant: Option<&str>| Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: format!("sha256:{arch}{}", variant.unwrap_or("")),
            size: 1,
            platform: Some(Platform {
                os: "linux".into(),
                architecture: arch.into(),
                variant: variant.map(Into::into),
            }),
        };
        let entries = [entry("amd64", None), entry("arm64", Some("v8"))];
        assert_eq!(
            select("i", &entries, &host).unwrap().digest,
            "sha256:arm64v8"
        );
        match select("i", &entries[..1], &host) {
            Err(Error::WrongPlatform {
                platform,
                supported,
                ..
            }) => {
                assert_eq!(
                    (platform.as_str(), supported.as_str()),
                    ("linux/amd64", "linux/arm64")
                );
            }
            other => panic!("{:?}", other.map(|d| d.digest.clone())),
        }
    }

    #[test]
    fn schema1_and_junk_are_refused() {
        assert!(matches!(
            parse("i", br#"{"schemaVersion":1}"#),
            Err(Error::InvalidSpec(_))
        ));
        assert!(matches!(parse("i", b"<html>"), Err(Error::DataLoss { .. })));
        assert!(matches!(
            parse(
                "i",
                br#"{"schemaVersion":2,"mediaType":"application/vnd.x"}"#
            ),
            Err(Error::InvalidSpec(_))
        ));
    }
}
