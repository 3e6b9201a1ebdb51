//! The agent's error types: [`Error`] for configuration, state store and start-up,
//! [`CallError`] for a CRI call (the runtime's errors and the agent's own refusals).
//! A `CallError` becomes a `tonic::Status` in [`crate::status`], the one place.

use std::io;
use std::path::PathBuf;

use runtimes::id::IdError;

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything berth can fail with outside a CRI call. Each message is one line and
/// names the file, socket or directory involved.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    ConfigRead {
        /// The config file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The config file is not valid YAML for berth's config, or a value is out of range.
    #[error("invalid config file {}: {message}", path.display())]
    Config {
        /// The config file (or `<default>` for the built-in defaults).
        path: PathBuf,
        /// What is wrong, naming the field.
        message: String,
    },
    /// Another berth holds the lock that guards the socket.
    #[error(
        "another berth is already running: it holds {} (the lock for socket {})",
        lock.display(),
        socket.display()
    )]
    AlreadyRunning {
        /// The lock file.
        lock: PathBuf,
        /// The socket it guards.
        socket: PathBuf,
    },
    /// The socket accepts connections although no berth holds its lock.
    #[error(
        "socket {} is already served by another process (another berth?); stop it or configure another `socket`",
        socket.display()
    )]
    SocketInUse {
        /// The socket path.
        socket: PathBuf,
    },
    /// Something other than a socket sits at the socket path; berth does not delete it.
    #[error(
        "{} exists and is not a unix socket; remove it or configure another `socket`",
        path.display()
    )]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// Another process has the state store open (two berths sharing one `state_dir`).
    #[error(
        "state store {} is open in another process (another berth with the same state_dir?)",
        path.display()
    )]
    StoreInUse {
        /// The database file.
        path: PathBuf,
    },
    /// The state store failed.
    #[error("state store {}: {source}", path.display())]
    Store {
        /// The database file.
        path: PathBuf,
        /// What redb reported.
        #[source]
        source: redb::Error,
    },
    /// A record in the state store cannot be decoded.
    #[error("state store {}: record {key:?} in table {table}: {why}", path.display())]
    StoreCorrupt {
        /// The database file.
        path: PathBuf,
        /// The table holding the record.
        table: String,
        /// The record's key.
        key: String,
        /// Why it cannot be read.
        why: String,
    },
    /// The state store was written by a newer berth.
    #[error(
        "state store {} has schema version {found}; this berth reads up to version {supported}",
        path.display()
    )]
    StoreSchema {
        /// The database file.
        path: PathBuf,
        /// The version found in the store.
        found: u64,
        /// The newest version this build understands.
        supported: u64,
    },
    /// A local I/O operation during start-up or shutdown failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The runtime backend could not be built.
    #[error("starting the runtime backend: {0}")]
    Runtime(#[from] runtimes::Error),
    /// The gRPC server failed.
    #[error("serving CRI on {}: {source}", socket.display())]
    Serve {
        /// The socket.
        socket: PathBuf,
        /// What tonic reported.
        #[source]
        source: tonic::transport::Error,
    },
    /// `berth delegate` could not serve on one of its addresses.
    #[error("serving the delegate protocol on {address}: {source}")]
    DelegateServe {
        /// The socket or TCP address.
        address: String,
        /// What tonic reported.
        #[source]
        source: tonic::transport::Error,
    },
    /// The NRI socket could not be served.
    #[error(transparent)]
    Nri(#[from] crate::nri::NriError),
    /// Logging could not be set up (for instance an invalid `RUST_LOG`).
    #[error("setting up logging: {0}")]
    Telemetry(String),
}

/// Why a CRI call failed. Most failures are the runtime's (or the agent's checks
/// that speak its vocabulary, such as `InvalidSpec`); the agent's own refusals get
/// variants here, each with an explicit status code in [`crate::status`].
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The runtime (or a check in its vocabulary) failed or refused.
    #[error(transparent)]
    Runtime(#[from] runtimes::Error),
    /// No ContainerId can be made from the names the request gives (the pod's
    /// name, namespace and labels, or the container's name).
    #[error("{method}: {source}")]
    Identity {
        /// The CRI method.
        method: &'static str,
        /// Which part of the id is invalid, and why.
        #[source]
        source: IdError,
    },
    /// An NRI plugin refused (or could not adjust) the pod or container.
    #[error(transparent)]
    Nri(#[from] crate::nri::NriError),
}

/// The result of a CRI call.
pub type CallResult<T> = std::result::Result<T, CallError>;

impl Error {
    /// An `Io` error with the context it happened in.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
