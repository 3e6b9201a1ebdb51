//! Pod networking for the youki backend: namespaces pinned without a pause process, and
//! CNI 1.0 plugins run against them.
//!
//! - [`Network::pin`] creates a pod's network, IPC or UTS namespace in a short-lived
//!   thread and bind-mounts it under `<run_dir>/{netns,ipcns,utsns}/<key>`.
//! - [`Network::attach`] brings `lo` up in the pod's network namespace and runs the
//!   network list found in `conf_dir` (first valid `*.conflist`/`*.conf`/`*.json`, as
//!   libcni) with CNI ADD; [`Network::detach`] runs DEL with what the ADD used, cached
//!   under `<run_dir>/cni/cache`. Both are safe to repeat; a failed or cancelled attach
//!   is undone (at once, or by the next detach).
//! - When `conf_dir` holds no config, [`Network::new`] writes berth's default: a bridge
//!   (gateway, no masquerade, hairpin) with host-local IPAM under `<run_dir>/cni/ipam`,
//!   then portmap for hostPorts. The bridge plugin turns on `net.ipv4.ip_forward` itself
//!   when it is a gateway (every ADD), so berth does not touch that sysctl.
//!
//! CHECK is never run: Debian's portmap 1.1.1 fails it for IPv4-only pods
//! (containernetworking/plugins#819) and CRI does not need it.
//!
//! - [`Network::pin_with_userns`] pins a pod's user namespace with the network, IPC and
//!   UTS namespaces made inside it (owned by it), from a short-lived child process.
//!
//! Under the run dir this module owns `netns/`, `ipcns/`, `utsns/`, `userns/` (pins), `cni/cache/`
//! (attachments) and `cni/ipam/` (the default network's addresses). `attach` and
//! `detach` run plugins as Tokio child processes with a deadline: they need a runtime
//! with the I/O and time drivers enabled.

mod attach;
mod cache;
mod chain;
mod config;
mod conflist;
mod detach;
mod error;
mod exec;
mod locks;
mod ns;
mod pod;
mod stats;
mod template;
#[cfg(test)]
mod tests;
mod userns;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use config::{NetworkConfig, DEFAULT_CONFLIST_FILE, DEFAULT_NETWORK_NAME};
pub use error::CniError;
pub use ns::{in_namespace, NsKind};
pub use pod::{Attachment, PodNetwork};
pub use template::{parse_pod_cidrs, RENDERED_CONFLIST_FILE};

use crate::error::{IoContext, Result};
use crate::types::{IdMapping, NetworkStats};
use cache::Cache;
use conflist::NetworkList;
use exec::Plugins;
use locks::KeyLocks;
use ns::Pins;
use template::Template;

/// The interface CNI creates inside every pod (`CNI_IFNAME`).
pub const POD_INTERFACE: &str = "eth0";

/// How long one plugin run may take before it is killed. ADD of bridge + portmap takes
/// tens of milliseconds and DEL a few hundred (iptables); this only bounds a hung plugin.
pub const PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What `berth doctor` says of pod networking, without writing anything: the network
/// config attach would use (or the default berth would write) and its plugins, or
/// what is missing.
pub fn check_config(config: &NetworkConfig) -> std::result::Result<String, String> {
    config.validate().map_err(|e| e.to_string())?;
    let plugins = Plugins::new(config.plugin_dirs.clone(), PLUGIN_TIMEOUT);
    let (list, source) = if let Some(path) = &config.conf_template {
        let template = Template::read(path).map_err(|e| e.to_string())?;
        let example = template.render_example().map_err(|e| e.to_string())?;
        (
            example,
            format!(
                "template {} (rendered when kubelet sends the pod CIDR)",
                path.display()
            ),
        )
    } else {
        match conflist::load(&config.conf_dir) {
            Ok((list, file)) => (list, file.display().to_string()),
            // berth writes its default into an empty (or missing) dir at start.
            Err(_) if conflist::config_files(&config.conf_dir).map_or(true, |f| f.is_empty()) => {
                let default = config.default_conflist(Path::new("/"));
                let list = NetworkList::from_value(&default)?;
                (
                    list,
                    format!(
                        "berth's default, written into {} at start",
                        config.conf_dir.display()
                    ),
                )
            }
            Err(why) => return Err(why),
        }
    };
    let binaries = list.binaries();
    let missing: Vec<&str> = binaries
        .iter()
        .copied()
        .filter(|ty| plugins.find(ty).is_none())
        .collect();
    if missing.is_empty() {
        Ok(format!(
            "network {} from {source}; plugins {} found in {}",
            list.name,
            binaries.join(", "),
            plugins.cni_path()
        ))
    } else {
        Err(format!(
            "CNI plugin(s) {} of network {} ({source}) not found in {}",
            missing.join(", "),
            list.name,
            plugins.cni_path()
        ))
    }
}

/// The first of comma-separated CIDRs.
fn first(cidrs: &str) -> &str {
    cidrs.split(',').next().unwrap_or_default()
}

/// The node's pod network: namespace pins and CNI attachments under one run dir.
pub struct Network {
    config: NetworkConfig,
    plugins: Plugins,
    pins: Pins,
    cache: Cache,
    locks: KeyLocks,
    /// `config.conf_template`, parsed.
    template: Option<Template>,
    /// Where the pod CIDR kubelet sent is recorded.
    cni_dir: PathBuf,
}

impl Network {
    /// Sets up the run dir and writes the default conflist into `conf_dir` when it holds
    /// no config file. Does not require the plugins to be present ([`Network::status`]
    /// reports that).
    pub fn new(config: NetworkConfig, run_dir: &Path) -> Result<Self> {
        Self::with_timeout(config, run_dir, PLUGIN_TIMEOUT)
    }

    fn with_timeout(config: NetworkConfig, run_dir: &Path, timeout: Duration) -> Result<Self> {
        config.validate()?;
        fs::create_dir_all(run_dir).io_context(|| format!("creating {}", run_dir.display()))?;
        // Canonical, because pin dirs are found again in /proc/self/mountinfo by path.
        let run_dir = run_dir
            .canonicalize()
            .io_context(|| format!("resolving {}", run_dir.display()))?;
        let cni_dir = run_dir.join("cni");
        let cache = Cache::open(cni_dir.join("cache"))?;
        let template = config
            .conf_template
            .as_deref()
            .map(Template::read)
            .transpose()?;
        match &template {
            // The network is the one kubelet's pod CIDR makes; until it comes (or from
            // the last one, after a restart) there is none of berth's.
            Some(t) => {
                fs::create_dir_all(&config.conf_dir)
                    .io_context(|| format!("creating {}", config.conf_dir.display()))?;
                if let Some(cidr) = template::recorded(&cni_dir) {
                    t.write(&config.conf_dir, first(&cidr))?;
                }
            }
            None => {
                let default = config.default_conflist(&cni_dir.join("ipam"));
                if conflist::write_if_none(&config.conf_dir, DEFAULT_CONFLIST_FILE, &default)? {
                    tracing::info!(
                        file = %config.conf_dir.join(DEFAULT_CONFLIST_FILE).display(),
                        "wrote the default CNI network config"
                    );
                }
            }
        }
        Ok(Network {
            plugins: Plugins::new(config.plugin_dirs.clone(), timeout),
            pins: Pins::new(run_dir),
            cache,
            locks: KeyLocks::default(),
            config,
            template,
            cni_dir,
        })
    }

    /// Takes the node's pod CIDR(s) kubelet sends (`UpdateRuntimeConfig`;
    /// comma-separated when dual-stack): records them and, with a `conf_template`,
    /// renders it with the first into `conf_dir`. Pods attached later use the new
    /// network; running pods keep their addresses. An empty CIDR changes nothing.
    /// Blocking (small file writes).
    pub fn set_pod_cidr(&self, pod_cidr: &str) -> Result<()> {
        let cidrs = template::parse_pod_cidrs(pod_cidr)?;
        if cidrs.is_empty() {
            return Ok(());
        }
        let joined = cidrs.join(",");
        if let Some(t) = &self.template {
            if t.write(&self.config.conf_dir, &cidrs[0])? {
                tracing::info!(
                    pod_cidr = joined,
                    file = %self.config.conf_dir.join(RENDERED_CONFLIST_FILE).display(),
                    "rendered the CNI config template with the node's pod CIDR"
                );
            }
        } else if template::recorded(&self.cni_dir).as_deref() != Some(joined.as_str()) {
            tracing::info!(
                pod_cidr = joined,
                "the node's pod CIDR is recorded; no network.conf_template uses it"
            );
        }
        template::record(&self.cni_dir, &joined)
    }

    /// The pod CIDR(s) kubelet last sent, comma-separated, if any.
    pub fn pod_cidr(&self) -> Option<String> {
        template::recorded(&self.cni_dir)
    }

    /// NetworkReady: `Ok` when `conf_dir` has a valid network config and every plugin it
    /// names (IPAM included) is in `plugin_dirs`; otherwise what is missing.
    pub fn status(&self) -> std::result::Result<(), String> {
        self.ready_list().map(drop)
    }

    /// The network list attach would use now, if it can run.
    fn ready_list(&self) -> std::result::Result<NetworkList, String> {
        let (list, file) = conflist::load(&self.config.conf_dir)?;
        let missing: Vec<&str> = list
            .binaries()
            .into_iter()
            .filter(|ty| self.plugins.find(ty).is_none())
            .collect();
        if missing.is_empty() {
            Ok(list)
        } else {
            Err(format!(
                "CNI plugin(s) {} of network {} ({}) not found in {}",
                missing.join(", "),
                list.name,
                file.display(),
                self.plugins.cni_path()
            ))
        }
    }

    /// Pins a new `kind` namespace for the pod `key` and returns its path; returns the
    /// existing pin when there is one. Blocking (a thread and a mount, a few ms).
    pub fn pin(&self, kind: NsKind, key: &str) -> Result<PathBuf> {
        pod::check_key(key)?;
        self.pins.pin(kind, key)
    }

    /// Pins a new user namespace for the pod `key`, mapped with `uids` and `gids`, and
    /// the `inner` namespaces (network, IPC, UTS) created inside it, so that they are
    /// owned by it; returns the user namespace's pin. Returns the existing pins when
    /// all are there; a failure leaves none. Blocking (a fork, a few ms). Unpin each
    /// kind with [`Network::unpin`].
    pub fn pin_with_userns(
        &self,
        key: &str,
        uids: &[IdMapping],
        gids: &[IdMapping],
        inner: &[NsKind],
    ) -> Result<PathBuf> {
        pod::check_key(key)?;
        self.pins.pin_in_userns(key, uids, gids, inner)
    }

    /// Removes the pin of `kind` for `key`; a missing pin is fine. Detach first: the
    /// network namespace's veth and addresses are CNI's to remove.
    pub fn unpin(&self, kind: NsKind, key: &str) -> Result<()> {
        pod::check_key(key)?;
        self.pins.unpin(kind, key)
    }

    /// Where the pin of `kind` for `key` is (or would be).
    pub fn pin_path(&self, kind: NsKind, key: &str) -> PathBuf {
        self.pins.path(kind, key)
    }

    /// Receive/transmit counters of `ifname` inside the network namespace at `netns`.
    pub fn interface_stats(&self, netns: &Path, ifname: &str) -> Result<NetworkStats> {
        stats::interface_stats(netns, ifname)
    }
}
