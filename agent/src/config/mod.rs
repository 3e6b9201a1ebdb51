//! berth's configuration file (YAML). Every field is optional with a default; unknown
//! fields are rejected so a typo never passes silently. `agent/CONFIG.md` is the
//! reference; [`DEFAULT_CONFIG_YAML`] is what `berth config default` prints.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub use crate::nri::NriConfig;
pub use crate::streaming::StreamingConfig;
pub use runtimes::image::RegistryConfig;
pub use runtimes::network::NetworkConfig;

/// Where `berth serve` looks for its config when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/berth/config.yaml";

/// The default config, commented, as `berth config default` prints it.
pub const DEFAULT_CONFIG_YAML: &str = include_str!("default.yaml");

/// The whole config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The CRI unix socket; default `/run/berth/berth.sock`.
    pub socket: PathBuf,
    /// berth's persistent state (`state.redb`, `images/`); default `/var/lib/berth`.
    pub state_dir: PathBuf,
    /// Runtime state that must not outlive a reboot (namespace pins, supervisor
    /// sockets, libcontainer state); default `/run/berth`.
    pub run_dir: PathBuf,
    /// The cgroup (cgroupfs path) under which pods go when kubelet names no parent;
    /// default `/berth`.
    pub cgroup_parent: String,
    /// The node part of every ContainerId; default the hostname.
    pub node_id: String,
    /// Logging.
    pub log: LogConfig,
    /// Metrics and trace export.
    pub telemetry: TelemetryConfig,
    /// Image registries: mirrors, plain-http hosts, credentials.
    pub registries: RegistryConfig,
    /// Pod networking: where CNI configs and plugins are, and the default network.
    pub network: NetworkConfig,
    /// The streaming server `Exec`, `Attach` and `PortForward` URLs point at.
    pub streaming: StreamingConfig,
    /// Backends besides the embedded youki one.
    pub backends: BackendsConfig,
    /// `berth delegate` only: where it serves the delegate protocol.
    pub delegate: DelegateServeConfig,
    /// NRI (Node Resource Interface) plugins; off by default.
    pub nri: NriConfig,
}

/// The `delegate` section: where `berth delegate` listens. `berth serve` ignores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DelegateServeConfig {
    /// A unix socket to serve on; null: none.
    pub socket: Option<PathBuf>,
    /// A TCP address (`host:port`) to serve on with mutual TLS; null: none.
    pub tcp: Option<String>,
    /// The server side of mutual TLS; required with `tcp`.
    pub tls: Option<DelegateServerTls>,
}

/// `delegate.tls`: PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelegateServerTls {
    /// The delegate's certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The CA a node's client certificate must chain to; other clients are refused.
    pub client_ca: PathBuf,
}

impl Default for DelegateServeConfig {
    fn default() -> Self {
        Self {
            socket: Some(PathBuf::from("/run/berth/delegate.sock")),
            tcp: None,
            tls: None,
        }
    }
}

/// `backends.delegate`: pods whose RuntimeClass names `handler`, and pods whose OS
/// only the delegate runs, run on a delegate berth (`berth delegate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DelegateBackendConfig {
    /// The runtime handler (RuntimeClass `handler`) served by the delegate.
    pub handler: String,
    /// `unix:///path` or `https://host:port` (mutual TLS, see `tls`).
    pub address: String,
    /// The OCI `os` values of the workloads the delegate runs.
    pub os: Vec<String>,
    /// The client side of mutual TLS; required for `https://`.
    pub tls: Option<DelegateClientTls>,
}

/// `backends.delegate.tls`: PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelegateClientTls {
    /// The CA the delegate's certificate must chain to.
    pub ca: PathBuf,
    /// This node's client certificate chain.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The name the delegate's certificate must carry; default: the address's host.
    #[serde(default)]
    pub server_name: String,
}

impl Default for DelegateBackendConfig {
    fn default() -> Self {
        Self {
            handler: "wsl2".to_string(),
            address: "unix:///run/berth/delegate.sock".to_string(),
            os: vec!["linux".to_string()],
            tls: None,
        }
    }
}

/// The `backends` section: the embedded youki backend (the default handler) and the
/// backends served besides it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendsConfig {
    /// youki, the default handler's backend.
    pub youki: YoukiConfig,
    /// containerd, through its own gRPC API; absent: not served.
    pub containerd: Option<ContainerdConfig>,
    /// A delegate berth, over the delegate protocol; absent: none.
    pub delegate: Option<DelegateBackendConfig>,
}

/// `backends.youki`: the default handler `""` always runs on youki; `handler` names it
/// too, so a RuntimeClass can select youki explicitly (and be scheduled by a node
/// label of its own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct YoukiConfig {
    /// The runtime handler youki serves besides the default `""`; empty: only `""`.
    pub handler: String,
}

impl Default for YoukiConfig {
    fn default() -> Self {
        Self {
            handler: "youki".to_string(),
        }
    }
}

/// `backends.containerd`: pods whose RuntimeClass names `handler` run their containers
/// on this containerd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContainerdConfig {
    /// The runtime handler (RuntimeClass `handler`) served by containerd.
    pub handler: String,
    /// containerd's gRPC socket.
    pub address: PathBuf,
    /// The containerd namespace berth's containers live in; berth never touches
    /// another namespace.
    pub namespace: String,
    /// The runtime (shim) containerd runs the tasks with.
    pub runtime: String,
    /// The runc the runc shim runs: a name looked up in berth's `PATH`, or a path.
    pub runc: PathBuf,
}

impl Default for ContainerdConfig {
    fn default() -> Self {
        Self {
            handler: "containerd".to_string(),
            address: PathBuf::from("/run/containerd/containerd.sock"),
            namespace: "berth".to_string(),
            runtime: "io.containerd.runc.v2".to_string(),
            runc: PathBuf::from("runc"),
        }
    }
}

/// The `telemetry` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// OpenTelemetry trace export.
    pub otlp: OtlpConfig,
}

/// `telemetry.otlp`: where and how traces are exported. Without `endpoint` nothing is
/// set up at all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// The collector's URL (`http://host:4317` for gRPC, `http://host:4318` for
    /// HTTP); null (the default): no traces are exported.
    pub endpoint: Option<String>,
    /// The OTLP transport.
    pub protocol: OtlpProtocol,
    /// The share of traces berth starts that are sampled, 0 to 1; a call whose
    /// caller sent a `traceparent` follows the caller's decision.
    pub sampling_ratio: f64,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// More resource attributes (`k8s.cluster.name: prod`); `service.instance.id` is
    /// the node id unless given here.
    pub resource_attributes: std::collections::BTreeMap<String, String>,
}

// `validate` refuses a NaN ratio, so the config's equality is an equivalence.
impl Eq for OtlpConfig {}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            protocol: OtlpProtocol::Grpc,
            sampling_ratio: 1.0,
            service_name: "berth".to_string(),
            resource_attributes: Default::default(),
        }
    }
}

/// `telemetry.otlp.protocol`, named as `OTEL_EXPORTER_OTLP_PROTOCOL` names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (port 4317 by convention).
    #[default]
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (port 4318 by convention).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

impl OtlpConfig {
    fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            return Err(format!(
                "sampling_ratio: {} must be between 0 and 1",
                self.sampling_ratio
            ));
        }
        if self.service_name.trim().is_empty() {
            return Err("service_name: must not be empty".into());
        }
        if let Some(key) = self.resource_attributes.keys().find(|k| k.is_empty()) {
            return Err(format!(
                "resource_attributes: `{key}` is not an attribute name"
            ));
        }
        let Some(endpoint) = &self.endpoint else {
            return Ok(());
        };
        let schemes: &[&str] = match self.protocol {
            // The gRPC exporter is built without TLS roots: a collector on the node or
            // in the cluster is reached in plain text.
            OtlpProtocol::Grpc => &["http://"],
            OtlpProtocol::HttpProtobuf => &["http://", "https://"],
        };
        let authority = schemes
            .iter()
            .find_map(|scheme| endpoint.strip_prefix(scheme))
            .map(|rest| rest.split('/').next().unwrap_or_default());
        match authority {
            Some(authority) if !authority.is_empty() => {}
            _ => {
                return Err(format!(
                    "endpoint: `{endpoint}` is not a {} URL with a host (e.g. {})",
                    schemes.join(" or "),
                    match self.protocol {
                        OtlpProtocol::Grpc => "http://127.0.0.1:4317",
                        OtlpProtocol::HttpProtobuf => "http://127.0.0.1:4318",
                    }
                ))
            }
        }
        endpoint
            .parse::<tonic::codegen::http::Uri>()
            .map_err(|e| format!("endpoint: `{endpoint}`: {e}"))?;
        Ok(())
    }
}

/// `telemetry.metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `ip:port` serving `/metrics` over plain HTTP; null (the default): not served.
    pub address: Option<std::net::SocketAddr>,
}

/// The `log` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A level or tracing filter (`info`, `info,berth=debug`); `RUST_LOG` overrides it.
    pub level: String,
    /// Line format.
    pub format: LogFormat,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/run/berth/berth.sock"),
            state_dir: PathBuf::from("/var/lib/berth"),
            run_dir: PathBuf::from("/run/berth"),
            cgroup_parent: "/berth".to_string(),
            node_id: hostname(),
            log: LogConfig::default(),
            telemetry: TelemetryConfig::default(),
            registries: RegistryConfig::default(),
            network: NetworkConfig::default(),
            streaming: StreamingConfig::default(),
            backends: BackendsConfig::default(),
            delegate: DelegateServeConfig::default(),
            nri: NriConfig::default(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_string(),
            format: LogFormat::Text,
        }
    }
}

/// The machine's hostname, the default `node_id`; `localhost` if it cannot be read,
/// so that a node id always exists (it is only a label).
fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Unix socket paths are limited to `sun_path`: 108 bytes including the final NUL.
const MAX_SOCKET_PATH: usize = 107;

impl Config {
    /// Loads the config from `path`, or from [`DEFAULT_CONFIG_PATH`] when `None`. A
    /// missing default file means all defaults; a missing explicit file is an error.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let file = path.unwrap_or(Path::new(DEFAULT_CONFIG_PATH));
        match fs::read_to_string(file) {
            Ok(text) => Config::from_yaml(&text).map_err(|message| Error::Config {
                path: file.to_path_buf(),
                message,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound && path.is_none() => {
                let config = Config::default();
                config.validate().map_err(|message| Error::Config {
                    path: PathBuf::from("<defaults>"),
                    message,
                })?;
                Ok(config)
            }
            Err(source) => Err(Error::ConfigRead {
                path: file.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses and validates a config document; the error names the field at fault.
    /// An empty document (or one with only comments) is all defaults.
    pub fn from_yaml(text: &str) -> Result<Config, String> {
        let config: Option<Config> = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        let config = config.unwrap_or_default();
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: values that parse but cannot work.
    fn validate(&self) -> Result<(), String> {
        let socket_len = self.socket.as_os_str().len();
        if socket_len == 0 {
            return Err("socket: must not be empty".to_string());
        }
        if socket_len > MAX_SOCKET_PATH {
            return Err(format!(
                "socket: {} is {socket_len} bytes long; unix socket paths are limited to {MAX_SOCKET_PATH}",
                self.socket.display()
            ));
        }
        if self.state_dir.as_os_str().is_empty() {
            return Err("state_dir: must not be empty".to_string());
        }
        if !self.run_dir.is_absolute() {
            return Err(format!(
                "run_dir: `{}` must be an absolute path",
                self.run_dir.display()
            ));
        }
        if !self.cgroup_parent.starts_with('/') || self.cgroup_parent.contains("..") {
            return Err(format!(
                "cgroup_parent: `{}` must be an absolute cgroup path without `..`",
                self.cgroup_parent
            ));
        }
        // The node id must be usable in a ContainerId; reuse its rule rather than restate it.
        runtimes::ContainerId::new("berth", runtimes::id::SANDBOX_ROLE, 0, &self.node_id)
            .map_err(|e| format!("node_id: {e}"))?;
        self.registries
            .validate()
            .map_err(|e| format!("registries: {e}"))?;
        self.streaming
            .validate()
            .map_err(|e| format!("streaming.{e}"))?;
        if let Some(c) = &self.backends.containerd {
            c.validate()
                .map_err(|e| format!("backends.containerd.{e}"))?;
            if c.handler == self.backends.youki.handler {
                return Err(format!(
                    "backends.containerd.handler: `{}` is backends.youki.handler too; a handler \
                     names one backend (rename one, or set backends.youki.handler to \"\")",
                    c.handler
                ));
            }
        }
        if let Some(d) = &self.backends.delegate {
            d.validate().map_err(|e| format!("backends.delegate.{e}"))?;
            let clash = self
                .backends
                .containerd
                .as_ref()
                .is_some_and(|c| c.handler == d.handler);
            if clash {
                return Err(format!(
                    "backends.delegate.handler: `{}` is containerd's handler too",
                    d.handler
                ));
            }
            if d.handler == self.backends.youki.handler {
                return Err(format!(
                    "backends.delegate.handler: `{}` is backends.youki.handler too; a handler \
                     names one backend",
                    d.handler
                ));
            }
        }
        self.nri.validate().map_err(|e| format!("nri.{e}"))?;
        self.delegate
            .validate()
            .map_err(|e| format!("delegate.{e}"))?;
        self.telemetry
            .otlp
            .validate()
            .map_err(|e| format!("telemetry.otlp.{e}"))?;
        tracing_subscriber::EnvFilter::try_new(&self.log.level).map_err(|e| {
            format!(
                "log.level: `{}` is not a level or filter: {e}",
                self.log.level
            )
        })?;
        Ok(())
    }

    /// The config as JSON with registry secrets replaced by `<redacted>`, for
    /// `Status{verbose}`: it shows what berth runs with without leaking credentials.
    pub fn redacted_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        let credentials = value
            .get_mut("registries")
            .and_then(|r| r.get_mut("credentials"))
            .and_then(|c| c.as_object_mut());
        for creds in credentials.into_iter().flat_map(|c| c.values_mut()) {
            for (key, secret) in creds.as_object_mut().into_iter().flatten() {
                let is_secret = key != "username";
                if is_secret && secret.as_str().is_some_and(|s| !s.is_empty()) {
                    *secret = serde_json::Value::from("<redacted>");
                }
            }
        }
        value
    }
}

impl DelegateBackendConfig {
    fn validate(&self) -> Result<(), String> {
        if self.handler.is_empty() {
            return Err("handler: must not be empty (the default handler is youki's)".into());
        }
        match (self.address.strip_prefix("unix://"), &self.tls) {
            (Some(path), _) if !path.starts_with('/') || path.len() > MAX_SOCKET_PATH => {
                return Err(format!(
                    "address: `{}` must name an absolute socket path of at most {MAX_SOCKET_PATH} bytes",
                    self.address
                ))
            }
            (Some(_), _) => {}
            (None, Some(_)) if self.address.starts_with("https://") => {}
            (None, None) if self.address.starts_with("https://") => {
                return Err("tls: required for an https:// address (ca, cert, key)".into())
            }
            (None, _) => {
                return Err(format!(
                    "address: `{}` is neither unix:///path nor https://host:port",
                    self.address
                ))
            }
        }
        if self.os.is_empty() {
            return Err("os: name at least one OS the delegate runs (e.g. [linux])".into());
        }
        Ok(())
    }
}

impl DelegateServeConfig {
    fn validate(&self) -> Result<(), String> {
        if let Some(socket) = &self.socket {
            if socket.as_os_str().is_empty() || socket.as_os_str().len() > MAX_SOCKET_PATH {
                return Err(format!(
                    "socket: `{}` must be a socket path of 1 to {MAX_SOCKET_PATH} bytes",
                    socket.display()
                ));
            }
        }
        if let Some(tcp) = &self.tcp {
            tcp.parse::<std::net::SocketAddr>()
                .map_err(|e| format!("tcp: `{tcp}` is not an ip:port address: {e}"))?;
            if self.tls.is_none() {
                return Err("tls: required with tcp (cert, key, client_ca): the delegate serves TCP only with mutual TLS".into());
            }
        }
        Ok(())
    }
}

impl ContainerdConfig {
    fn validate(&self) -> Result<(), String> {
        if self.handler.is_empty() {
            return Err("handler: must not be empty (the default handler is youki's)".into());
        }
        if !self.address.is_absolute() {
            return Err(format!(
                "address: `{}` must be an absolute path",
                self.address.display()
            ));
        }
        if self.address.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(format!(
                "address: {} is longer than a unix socket path may be ({MAX_SOCKET_PATH} bytes)",
                self.address.display()
            ));
        }
        // containerd's namespace rule: a DNS label-like identifier.
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if self.namespace.is_empty()
            || !self
                .namespace
                .starts_with(|c: char| c.is_ascii_alphanumeric())
            || !self.namespace.chars().all(valid)
            || self.namespace.len() > 76
        {
            return Err(format!(
                "namespace: `{}` is not a containerd namespace (letters, digits, `-`, `_`, `.`; starting with a letter or digit)",
                self.namespace
            ));
        }
        if self.runtime.is_empty() {
            return Err("runtime: must not be empty (e.g. io.containerd.runc.v2)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
