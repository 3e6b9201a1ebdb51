//! How CNI fails: a plugin missing or failing, a result berth cannot use, an
//! attachment cache it cannot read. Wrapped in the crate's [`Error::Cni`], whose
//! status code the agent derives from the variant (`agent/src/status.rs`).

use crate::error::Error;

/// A CNI failure.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// The network list names a plugin that is not installed.
    #[error("CNI plugin {plugin:?} not found in {path}")]
    PluginNotFound {
        /// The plugin's `type`.
        plugin: String,
        /// The directories searched.
        path: String,
    },
    /// A plugin exited with a failure.
    #[error("{what} failed: {message}")]
    PluginFailed {
        /// The operation: command, plugin, network and pod.
        what: String,
        /// The CNI error code of the plugin's error object, when it printed one.
        code: Option<u64>,
        /// What it said (its `msg` and `details`, else its output, else its status).
        message: String,
    },
    /// A plugin succeeded but printed something that is not a result.
    #[error("{what} printed a result that is not a JSON object: {output}")]
    BadResult {
        /// The operation.
        what: String,
        /// The end of what it printed.
        output: String,
    },
    /// Every plugin of the list succeeded and none printed a result.
    #[error("network {network}: no plugin printed a result")]
    NoResult {
        /// The network list's name.
        network: String,
    },
    /// The result has no address on the pod's interface.
    #[error("the CNI result has no IP address for {ifname}: {result}")]
    NoAddress {
        /// The pod's interface.
        ifname: String,
        /// The result.
        result: String,
    },
    /// The attachment cache of a pod cannot be decoded.
    #[error("the CNI attachment cache {path} is unreadable: {source}")]
    CacheUnreadable {
        /// The cache file.
        path: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The cached network config of a pod is not a network list.
    #[error("cached network config: {0}")]
    CachedConfig(String),
    /// A pod cannot be detached: its cache is unreadable, and the current network
    /// config cannot stand in for it.
    #[error("cannot detach pod {key}: {unreadable}; {current}")]
    CannotDetach {
        /// The pod's key.
        key: String,
        /// Why the cache is unusable.
        unreadable: String,
        /// Why the current config is unusable.
        current: String,
    },
    /// An ADD failed, and so did undoing the plugins that had run.
    #[error("{}; undoing it failed too: {cleanup}", super::chain::message(error))]
    AddUndone {
        /// Why the ADD failed.
        #[source]
        error: Box<Error>,
        /// What failed while undoing it.
        cleanup: String,
    },
}

impl CniError {
    /// The CNI error code (spec, "Error" section) meaning "try again later".
    pub const TRY_AGAIN_LATER: u64 = 11;

    /// CNI error codes that say the node's network config is wrong or not supported
    /// (incompatible version, unsupported field, invalid network config).
    pub const NODE_CONFIG_CODES: [u64; 3] = [1, 2, 7];
}
