//! The `network` section of berth's config, and the conflist berth writes when the CNI
//! config dir has none.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// Name of the network in the default conflist (and in the iptables comments portmap
/// writes for it).
pub const DEFAULT_NETWORK_NAME: &str = "berth";

/// File name of the default conflist inside `conf_dir`.
pub const DEFAULT_CONFLIST_FILE: &str = "10-berth.conflist";

/// Where CNI configs and plugins are found, and the shape of the default network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Directory of CNI network configs (`*.conflist`, `*.conf`, `*.json`); the first
    /// valid one in lexical order is used. Default `/etc/cni/net.d`.
    pub conf_dir: PathBuf,
    /// Directories searched, in order, for plugin binaries; also the plugins' `CNI_PATH`.
    /// Default `/usr/lib/cni` (Debian) then `/opt/cni/bin` (upstream tarballs).
    pub plugin_dirs: Vec<PathBuf>,
    /// IPv4 subnet of the default bridge network. Default `10.85.0.0/16`.
    pub default_subnet: String,
    /// Bridge of the default network. Default `berth0`.
    pub default_bridge: String,
    /// A CNI network list with `{{.PodCIDR}}` where the node's pod CIDR goes, rendered
    /// into `conf_dir` when kubelet sends the CIDR (`UpdateRuntimeConfig`). When set,
    /// berth writes no default network. Default none.
    pub conf_template: Option<PathBuf>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            conf_dir: PathBuf::from("/etc/cni/net.d"),
            plugin_dirs: vec![PathBuf::from("/usr/lib/cni"), PathBuf::from("/opt/cni/bin")],
            default_subnet: "10.85.0.0/16".to_string(),
            default_bridge: "berth0".to_string(),
            conf_template: None,
        }
    }
}

impl NetworkConfig {
    /// Rejects values that could only fail later, inside a plugin.
    pub(crate) fn validate(&self) -> Result<()> {
        parse_ipv4_cidr(&self.default_subnet).ok_or_else(|| {
            Error::InvalidSpec(format!(
                "network.default_subnet {:?} is not an IPv4 CIDR like 10.85.0.0/16",
                self.default_subnet
            ))
        })?;
        let b = &self.default_bridge;
        // The kernel's limit is IFNAMSIZ - 1 = 15 bytes, without '/', ':' or whitespace.
        if b.is_empty()
            || b.len() > 15
            || b.chars()
                .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
        {
            return Err(Error::InvalidSpec(format!(
                "network.default_bridge {b:?} is not a valid interface name (1-15 characters, \
                 no '/', ':' or spaces)"
            )));
        }
        if self.plugin_dirs.is_empty() {
            return Err(Error::InvalidSpec(
                "network.plugin_dirs is empty: CNI plugins could not be found".into(),
            ));
        }
        Ok(())
    }

    /// The default conflist: one bridge (gateway, no masquerade, hairpin for a pod that
    /// reaches itself through a service or hostPort) with host-local addresses kept in
    /// `ipam_dir`, then portmap for hostPorts. portmap's `snat` makes hostPorts answer on
    /// 127.0.0.1 (it sets `route_localnet` on the bridge and masquerades that source).
    pub(crate) fn default_conflist(&self, ipam_dir: &Path) -> Value {
        json!({
            "cniVersion": "1.0.0",
            "name": DEFAULT_NETWORK_NAME,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.default_bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{ "subnet": self.default_subnet }]],
                        "routes": [{ "dst": "0.0.0.0/0" }],
                        "dataDir": ipam_dir,
                    }
                },
                {
                    "type": "portmap",
                    "capabilities": { "portMappings": true },
                    "snat": true
                }
            ]
        })
    }
}

/// Parses `a.b.c.d/len`.
fn parse_ipv4_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (addr, len) = s.split_once('/')?;
    let len: u8 = len.parse().ok()?;
    (len <= 32).then_some(())?;
    Some((addr.parse().ok()?, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = NetworkConfig::default();
        c.validate().unwrap();
        assert_eq!(c.conf_dir, Path::new("/etc/cni/net.d"));
        assert_eq!(c.default_bridge, "berth0");
        assert_eq!(c.default_subnet, "10.85.0.0/16");
    }

    #[test]
    fn config_is_read_with_defaults_and_rejects_unknown_fields() {
        let c: NetworkConfig = serde_json::from_value(json!({"default_bridge": "br9"})).unwrap();
        assert_eq!(c.default_bridge, "br9");
        assert_eq!(c.plugin_dirs, NetworkConfig::default().plugin_dirs);
        let err = serde_json::from_value::<NetworkConfig>(json!({"conf-dir": "/x"})).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn bad_subnets_and_bridges_are_rejected() {
        for subnet in ["10.85.0.0", "10.85.0.0/33", "fd00::/64", "banana/8", ""] {
            let c = NetworkConfig {
                default_subnet: subnet.into(),
                ..Default::default()
            };
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains("default_subnet"), "{subnet}: {err}");
        }
        for bridge in ["", "a-very-long-bridge", "br/0", "br 0"] {
            let c = NetworkConfig {
                default_bridge: bridge.into(),
                ..Default::default()
            };
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains("default_bridge"), "{bridge}: {err}");
        }
        let c = NetworkConfig {
            plugin_dirs: vec![],
            ..Default::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("plugin_dirs"));
    }

    #[test]
    fn default_conflist_is_the_documented_one() {
        let c = NetworkConfig {
            default_bridge: "bt1".into(),
            default_subnet: "10.201.0.0/16".into(),
            ..Default::default()
        };
        let got = c.default_conflist(Path::new("/run/b/cni/ipam"));
        let want = json!({
            "cniVersion": "1.0.0",
            "name": "berth",
            "plugins": [
                {"type": "bridge", "bridge": "bt1", "isGateway": true, "ipMasq": false,
                 "hairpinMode": true,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.201.0.0/16"}]],
                          "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "/run/b/cni/ipam"}},
                {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
            ]
        });
        assert_eq!(got, want);
    }
}
