//! Logging and tracing: the subscriber set up from `log` in the config, the per-call
//! span every CRI call runs in ([`CriTraceLayer`]), and, with `telemetry.otlp`, the
//! export of those spans and their children as OpenTelemetry traces ([`Traces`]).
//!
//! Fields are structured (ids are string fields, never formatted into messages) and
//! follow OpenTelemetry's names where one exists (`rpc.method`, `otel.kind`): the
//! OpenTelemetry layer turns them into span names, kinds and attributes.

mod endpoint;
mod layer;
mod metrics;
mod objects;
mod otlp;
mod server_span;

use std::io::IsTerminal;

use tracing::{Level, Metadata};
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

use crate::config::{LogConfig, LogFormat, OtlpConfig};
use crate::error::{Error, Result};

pub use endpoint::{serve as serve_metrics, CountObjects};
pub use layer::{CriTrace, CriTraceLayer};
pub use metrics::{metrics, observe_runtimes, ObjectCounts, ObjectKey, PullFailure};
pub use objects::count as count_objects;
pub use otlp::Traces;
pub use server_span::DelegateTraceLayer;

/// An id a CRI call names, recorded on the call's span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallField {
    /// The CRI pod sandbox id.
    PodSandboxId,
    /// The CRI container id.
    ContainerId,
    /// The image reference or id as the request gave it.
    Image,
    /// The object's ContainerId (berth's own, `{service}-{role}-{replica}-on-{node}`).
    BerthId,
    /// The name in the request's metadata (`namespace/name` for a pod).
    Name,
    /// The attempt in the request's metadata.
    Attempt,
}

impl CallField {
    /// The span field's name.
    pub const fn name(self) -> &'static str {
        match self {
            CallField::PodSandboxId => "pod_sandbox_id",
            CallField::ContainerId => "container_id",
            CallField::Image => "image",
            CallField::BerthId => "berth_id",
            CallField::Name => "name",
            CallField::Attempt => "attempt",
        }
    }
}

/// Records `value` as `field` on the current CRI call's span, so every event of the
/// call (including the failure the layer logs) carries it. Outside a call it does
/// nothing.
pub fn record(field: CallField, value: impl tracing::Value) {
    tracing::Span::current().record(field.name(), value);
}

/// Installs the global subscriber: `RUST_LOG` when set, else `log.level`; text or
/// JSON lines on stderr; and, when `otlp` names an endpoint, the OpenTelemetry layer
/// over the returned pipeline. With an endpoint it must run inside the tokio runtime.
pub fn init(log: &LogConfig, otlp: &OtlpConfig, node_id: &str) -> Result<Option<Traces>> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => EnvFilter::try_new(&env)
            .map_err(|e| Error::Telemetry(format!("RUST_LOG `{env}` is not a filter: {e}")))?,
        // Validated when the config was loaded.
        _ => EnvFilter::try_new(&log.level)
            .map_err(|e| Error::Telemetry(format!("log.level `{}`: {e}", log.level)))?,
    };
    // Each layer filters for itself: the log filter must not decide which spans are
    // traced (the child spans are debug, below the usual log level), nor the other way.
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = match log.format {
        LogFormat::Text => lines
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => lines
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
    };
    let traces = Traces::start(otlp, node_id)?;
    let subscriber = tracing_subscriber::registry().with(lines);
    // Without an exporter no OpenTelemetry layer at all (not even a `None` one): the
    // debug spans then have no subscriber interest and cost next to nothing.
    let installed = match &traces {
        Some(traces) => subscriber
            .with(
                tracing_opentelemetry::layer()
                    .with_tracer(traces.tracer())
                    // The ids and the span tree tell what a span is; source lines,
                    // threads and poll timings would only weigh on every export.
                    .with_location(false)
                    .with_threads(false)
                    .with_target(false)
                    .with_tracked_inactivity(false)
                    .with_filter(filter_fn(traced)),
            )
            .try_init(),
        None => subscriber.try_init(),
    };
    installed.map_err(|e| Error::Telemetry(e.to_string()))?;
    Ok(traces)
}

/// What the OpenTelemetry layer sees: berth's spans down to debug (the CRI call and
/// the work under it, not the libraries' internals), and warnings and errors as span
/// events.
fn traced(metadata: &Metadata<'_>) -> bool {
    if metadata.is_span() {
        let ours = ["berth", "runtimes"]
            .iter()
            .any(|crate_name| metadata.target().split("::").next() == Some(crate_name));
        ours && *metadata.level() <= Level::DEBUG
    } else {
        *metadata.level() <= Level::WARN
    }
}
