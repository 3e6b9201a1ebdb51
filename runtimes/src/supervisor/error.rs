//! Why a supervisor request, or the supervisor itself, failed. Each variant keeps its
//! cause as a source; [`Error::code`] is the wire code the agent turns into a CRI
//! status, so a missing container, a refused request and a broken host stay apart
//! across the socket. The message sent is [`Error::chain`]: the variant's text and
//! every source's, as libcontainer's own top-level texts say too little.

use std::io;

use berth_proto::supervisor::error::Code;
use libcontainer::error::LibcontainerError;

/// Shorthand for results of the supervisor.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the supervisor fails with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The supervisor holds no container of that id.
    #[error("container {id} not found in its pod's supervisor")]
    NotFound {
        /// The container's id.
        id: String,
    },
    /// The supervisor holds a container of that id already.
    #[error("container {id} exists")]
    AlreadyExists {
        /// The container's id.
        id: String,
    },
    /// The container or the pod is not in a state that allows the request.
    #[error("{0}")]
    Precondition(String),
    /// The request (or the command line) is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The log file the request names cannot be opened.
    #[error("opening the log {path}: {source}")]
    Log {
        /// The path the request gave.
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// libcontainer will not execute the command the request names (its executor's
    /// checks of `args[0]`): the request's fault, not the host's.
    #[error("the command cannot be executed: {source}")]
    NotExecutable {
        /// The launch failure that says so.
        #[source]
        source: Box<Error>,
    },
    /// A libcontainer call failed.
    #[error("{what}: {source}")]
    Libcontainer {
        /// What was being done, naming the container.
        what: String,
        /// libcontainer's error (boxed: it is large, and failures travel by value).
        #[source]
        source: Box<LibcontainerError>,
    },
    /// An OS call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the path or pid.
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A spec or process could not be read, built or encoded.
    #[error("{what}: {source}")]
    Spec {
        /// What was being read or built.
        what: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Something the supervisor relies on did not hold (an init without a pid, a
    /// process that survived SIGKILL).
    #[error("{0}")]
    Broken(String),
    /// Several steps of one request failed (the containers of a shutting-down pod).
    #[error("{}", joined(failures))]
    Several {
        /// Every failure, in order.
        failures: Vec<Error>,
    },
}

fn joined(failures: &[Error]) -> String {
    let texts: Vec<String> = failures.iter().map(Error::chain).collect();
    texts.join("; ")
}

impl Error {
    /// An [`Error::Io`] for `what`.
    pub fn io(what: impl Into<String>, source: impl Into<io::Error>) -> Self {
        Error::Io {
            what: what.into(),
            source: source.into(),
        }
    }

    /// An [`Error::Libcontainer`] for `what`.
    pub fn libcontainer(what: impl Into<String>, source: LibcontainerError) -> Self {
        Error::Libcontainer {
            what: what.into(),
            source: Box::new(source),
        }
    }

    /// An [`Error::Spec`] for `what`.
    pub fn spec(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Spec {
            what: what.into(),
            source: source.into(),
        }
    }

    /// The code the agent sees: the request's fault, the object's state or the
    /// supervisor's. Several failures keep their code when they all share it.
    pub fn code(&self) -> Code {
        match self {
            Error::NotFound { .. } => Code::NotFound,
            Error::AlreadyExists { .. } => Code::AlreadyExists,
            Error::Precondition(_) => Code::FailedPrecondition,
            Error::Invalid(_) | Error::Log { .. } | Error::NotExecutable { .. } => Code::Invalid,
            Error::Libcontainer { .. } | Error::Io { .. } | Error::Spec { .. } => Code::Internal,
            Error::Broken(_) => Code::Internal,
            Error::Several { failures } => {
                let mut codes = failures.iter().map(Error::code);
                let first = codes.next().unwrap_or(Code::Internal);
                if codes.all(|c| c == first) {
                    first
                } else {
                    Code::Internal
                }
            }
        }
    }

    /// The message with every source's text.
    pub fn chain(&self) -> String {
        crate::error::error_chain(self)
    }
}
