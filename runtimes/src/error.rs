//! The one error type of the `runtimes` crate. The agent maps it to a gRPC status in
//! exactly one place (`agent/src/status.rs`); every variant there has an explicit code.

use std::time::Duration;

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a backend, the image store or the composite can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// This node cannot run the workload; the scheduler should place it on a peer
    /// that can (a node with the required OS, delegate or runtime handler).
    /// The message carries `[ROUTE_TO_PEER key=value…]` (the agent's ErrorInfo reason
    /// and metadata): kubelet shows only the message (`kubectl describe`'s
    /// FailedCreatePodSandBox), and scripts can still tell a refusal from a failure.
    #[error("{service} cannot run on this node [ROUTE_TO_PEER{}]: {reason}", route_keys(.required_os, .handler))]
    RouteToPeer {
        /// The workload (a ContainerId's service).
        service: String,
        /// The OS the workload needs, or `*` when the OS is not the issue.
        required_os: String,
        /// The runtime handler the pod asked for (empty: the default).
        handler: String,
        /// The refused pod sandbox's or container's ContainerId (display form).
        container_id: String,
        /// Why, and what would make this node able to run it.
        reason: String,
    },
    /// The named object does not exist.
    #[error("{kind} {id} not found")]
    NotFound {
        /// What was looked for: `image`, `pod sandbox`, `container`, …
        kind: &'static str,
        /// How it was named.
        id: String,
    },
    /// The object exists already.
    #[error("{kind} {id} already exists")]
    AlreadyExists {
        /// What kind of object.
        kind: &'static str,
        /// How it was named.
        id: String,
    },
    /// The request is malformed; the message says which field and why.
    #[error("{0}")]
    InvalidSpec(String),
    /// The backend does not implement this operation.
    #[error("{operation} is not supported by the {backend} backend")]
    Unsupported {
        /// The backend's name.
        backend: String,
        /// The operation asked for.
        operation: &'static str,
    },
    /// The image is for a platform this backend does not run.
    #[error("image {image} is for {platform}; the {backend} backend runs {supported}")]
    WrongPlatform {
        /// The image reference.
        image: String,
        /// The image's `os/architecture`.
        platform: String,
        /// The backend's name.
        backend: String,
        /// What the backend runs.
        supported: String,
    },
    /// The object is not in a state that allows the operation.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A delegate answered a call with an error; `code` is the gRPC code it gave, which
    /// is the code berth's CRI server gives the same error.
    #[error("{delegate}: {message}")]
    Delegated {
        /// The delegate, naming its address.
        delegate: String,
        /// The code of the delegate's answer.
        code: tonic::Code,
        /// The delegate's message.
        message: String,
    },
    /// A remote service (registry, containerd, delegate) could not be reached.
    #[error("{service} is unreachable: {message}")]
    Unavailable {
        /// What was being reached, e.g. `registry 127.0.0.1:5000`.
        service: String,
        /// The underlying failure.
        message: String,
    },
    /// A registry refused the credentials (or asked for some and got none).
    #[error("{service} refused access: {message}")]
    Unauthenticated {
        /// The registry.
        service: String,
        /// What it said.
        message: String,
    },
    /// The operation ran out of time.
    #[error("{operation} did not finish within {after:?}")]
    DeadlineExceeded {
        /// What was running.
        operation: String,
        /// The time allowed.
        after: Duration,
    },
    /// Content did not match its digest, or was otherwise corrupt.
    #[error("{what}: {message}")]
    DataLoss {
        /// What was corrupt (a blob digest, a layer).
        what: String,
        /// How.
        message: String,
    },
    /// A backend failed in a way the caller cannot fix.
    #[error("{backend}: {message}")]
    Backend {
        /// The backend or component.
        backend: String,
        /// What went wrong.
        message: String,
    },
    /// Several steps of one operation failed (a teardown goes on past a failure and
    /// reports them all). The status code follows from the parts: their shared code,
    /// else an internal failure.
    #[error("{what}: {}", joined(failures))]
    Failures {
        /// The operation, naming its object.
        what: String,
        /// Every failure, in the order they happened (at least one).
        failures: Vec<Error>,
    },
    /// A failure of the host or of a library the caller cannot fix, with its cause.
    #[error("{backend}: {what}: {source}")]
    Internal {
        /// The backend or component.
        backend: String,
        /// What was being done, naming the object.
        what: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A CNI failure (the pod network).
    #[error("cni: {0}")]
    Cni(#[from] crate::network::CniError),
    /// A local I/O failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A `NotFound` for `kind` named `id`.
    pub fn not_found(kind: &'static str, id: impl ToString) -> Self {
        Error::NotFound {
            kind,
            id: id.to_string(),
        }
    }

    /// An `Io` error with the context it happened in.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// An internal failure of `backend`.
    pub fn backend(backend: impl Into<String>, message: impl ToString) -> Self {
        Error::Backend {
            backend: backend.into(),
            message: message.to_string(),
        }
    }

    /// An `Internal` failure of `backend` doing `what`, keeping `source`.
    pub fn internal(
        backend: impl Into<String>,
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Internal {
            backend: backend.into(),
            what: what.into(),
            source: source.into(),
        }
    }

    /// One error for the failed steps of `what`: none is success, else
    /// [`Error::Failures`] (which keeps each failure's kind, and so its code).
    pub fn combine(what: impl Into<String>, failures: Vec<Error>) -> Result<()> {
        if failures.is_empty() {
            return Ok(());
        }
        Err(Error::Failures {
            what: what.into(),
            failures,
        })
    }

    /// True for `NotFound`.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
            || matches!(self, Error::Delegated { code, .. } if *code == tonic::Code::NotFound)
    }
}

/// Each failure's text with its sources, joined.
fn joined(failures: &[Error]) -> String {
    let texts: Vec<String> = failures.iter().map(|e| error_chain(e)).collect();
    texts.join("; ")
}

/// `error` and its sources, joined: many libraries' own messages hide the cause
/// (reqwest's "error sending request", libcontainer's "failed to create container").
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Adds context to I/O results: `fs::read(p).io_context(|| format!("reading {p:?}"))`.
pub trait IoContext<T> {
    /// Wraps an I/O error with the context built by `f`.
    fn io_context<C: Into<String>>(self, f: impl FnOnce() -> C) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn io_context<C: Into<String>>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|source| Error::io(f(), source))
    }
}

/// The ` key=value` pairs of a [`Error::RouteToPeer`] message: what the pod needs.
fn route_keys(required_os: &str, runtime_handler: &str) -> String {
    let mut keys = String::new();
    if required_os != "*" {
        keys.push_str(&format!(" required_os={required_os}"));
    }
    if !runtime_handler.is_empty() {
        keys.push_str(&format!(" runtime_handler={runtime_handler}"));
    }
    keys
}
