//! Logging and tracing: the subscriber set up from `log` in the config, and the
//! per-call span every CRI call runs in ([`CriTraceLayer`]).
//!
//! Fields are structured (ids are string fields, never formatted into messages) and
//! follow OpenTelemetry's names where one exists (`rpc.method`, `otel.kind`), so an
//! OpenTelemetry exporter can be added as one more subscriber layer.

mod endpoint;
mod layer;
mod metrics;
mod objects;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};
use crate::error::{Error, Result};

pub use endpoint::{serve as serve_metrics, CountObjects};
pub use layer::{CriTrace, CriTraceLayer};
pub use metrics::{metrics, observe_runtimes, ObjectCounts, ObjectKey, PullFailure};
pub use objects::count as count_objects;

/// An id a CRI call names, recorded on the call's span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallField {
    /// The CRI pod sandbox id.
    PodSandboxId,
    /// The CRI container id.
    ContainerId,
    /// The ContainerId (display form) of the pod sandbox or container the call is
    /// about: what the backends' own lines name it by.
    BerthContainerId,
    /// The image reference or id as the request gave it.
    Image,
}

impl CallField {
    /// The span field's name.
    pub const fn name(self) -> &'static str {
        match self {
            CallField::PodSandboxId => "pod_sandbox_id",
            CallField::ContainerId => "container_id",
            CallField::BerthContainerId => "berth.container_id",
            CallField::Image => "image",
        }
    }
}

/// Records `value` as `field` on the current CRI call's span, so every event of the
/// call (including the failure the layer logs) carries it. Outside a call it does
/// nothing.
pub fn record(field: CallField, value: &str) {
    tracing::Span::current().record(field.name(), value);
}

/// Installs the global subscriber: `RUST_LOG` when set, else `log.level`; text or
/// JSON lines on stderr.
pub fn init(log: &LogConfig) -> Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => EnvFilter::try_new(&env)
            .map_err(|e| Error::Telemetry(format!("RUST_LOG `{env}` is not a filter: {e}")))?,
        // Validated when the config was loaded.
        _ => EnvFilter::try_new(&log.level)
            .map_err(|e| Error::Telemetry(format!("log.level `{}`: {e}", log.level)))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match log.format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    installed.map_err(|e| Error::Telemetry(e.to_string()))
}
