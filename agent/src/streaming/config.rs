//! The `streaming:` section of berth's config.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where the streaming server listens and how long its URLs live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamingConfig {
    /// The address to listen on; default `127.0.0.1`, so that only clients on this
    /// node (kubelet, crictl) reach it. The URLs handed out name this address.
    pub address: IpAddr,
    /// The TCP port; `0` (the default) takes a free port at start-up, and the URLs
    /// carry the port actually bound.
    pub port: u16,
    /// Serve HTTPS with this certificate and key instead of plain HTTP.
    pub tls: Option<TlsFiles>,
    /// How long a URL from `Exec`, `Attach` or `PortForward` may wait for its one
    /// use, in seconds; default 60, as kubelet's own streaming server.
    pub token_ttl_seconds: u64,
}

/// The PEM files of the streaming server's TLS identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        Self {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 0,
            tls: None,
            token_ttl_seconds: 60,
        }
    }
}

impl StreamingConfig {
    /// The token lifetime as a duration.
    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.token_ttl_seconds)
    }

    /// Checks what serde cannot; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.token_ttl_seconds == 0 {
            return Err("token_ttl_seconds: must be at least 1".to_string());
        }
        if let Some(tls) = &self.tls {
            if tls.cert.as_os_str().is_empty() || tls.key.as_os_str().is_empty() {
                return Err("tls: both cert and key must name files".to_string());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<StreamingConfig, String> {
        let config: StreamingConfig = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    #[test]
    fn defaults_listen_on_loopback_with_a_free_port_and_kubelets_ttl() {
        let config = parse("{}").unwrap();
        assert_eq!(config, StreamingConfig::default());
        assert_eq!(config.address.to_string(), "127.0.0.1");
        assert_eq!(config.port, 0);
        assert_eq!(config.token_ttl(), Duration::from_secs(60));
        assert!(config.tls.is_none());
    }

    #[test]
    fn every_field_can_be_set() {
        let config = parse(
            "address: '::1'\nport: 10350\ntoken_ttl_seconds: 5\n\
             tls: {cert: /etc/berth/stream.crt, key: /etc/berth/stream.key}\n",
        )
        .unwrap();
        assert_eq!(config.address.to_string(), "::1");
        assert_eq!(config.port, 10350);
        assert_eq!(config.token_ttl(), Duration::from_secs(5));
        let tls = config.tls.unwrap();
        assert_eq!(tls.cert, PathBuf::from("/etc/berth/stream.crt"));
        assert_eq!(tls.key, PathBuf::from("/etc/berth/stream.key"));
    }

    #[test]
    fn mistakes_name_the_field() {
        let unknown = parse("adress: 0.0.0.0").unwrap_err();
        assert!(unknown.contains("adress"), "{unknown}");
        assert!(parse("address: localhost").unwrap_err().contains("address"));
        assert!(parse("port: 70000").is_err());
        assert!(parse("tls: {cert: /c}").unwrap_err().contains("key"));
        assert!(parse("token_ttl_seconds: 0")
            .unwrap_err()
            .contains("token_ttl_seconds"));
    }
}
