//! W3C trace context (`traceparent`, `tracestate`) across gRPC hops: a server span
//! adopts the caller's trace, a client puts the current span's in its request, so one
//! trace spans kubelet, the node agent and its delegate.
//!
//! The context is read from and written to the tracing span through the
//! OpenTelemetry layer; without it (no `telemetry.otlp.endpoint`) the current span
//! has no valid context and nothing is written.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::codegen::http::HeaderMap;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header that carries the trace id and the parent span id.
pub const TRACEPARENT: &str = "traceparent";

/// Makes `span` a child of the trace context in `headers`, when they carry one.
pub fn adopt(span: &tracing::Span, headers: &HeaderMap) {
    // Most calls carry none: skip the propagator's parsing for them.
    if !headers.contains_key(TRACEPARENT) {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    if parent.span().span_context().is_valid() {
        // Fails only when no OpenTelemetry layer is installed: nothing to adopt into.
        let _ = span.set_parent(parent);
    }
}

/// Writes the current span's trace context into `metadata`, when it has one.
pub fn inject(metadata: &mut MetadataMap) {
    let context = tracing::Span::current().context();
    if context.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&context, &mut Metadata(metadata));
    }
}

/// A tonic interceptor: [`inject`] into every request of a client.
pub fn propagate(
    mut request: tonic::Request<()>,
) -> std::result::Result<tonic::Request<()>, tonic::Status> {
    inject(request.metadata_mut());
    Ok(request)
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct Metadata<'a>(&'a mut MetadataMap);

impl Injector for Metadata<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    use super::*;

    #[test]
    fn a_context_injected_into_metadata_is_extracted_from_its_headers() {
        let sent = SpanContext::new(
            TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736),
            SpanId::from(0x00f067aa0ba902b7),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let context = opentelemetry::Context::new().with_remote_span_context(sent.clone());
        let mut metadata = MetadataMap::new();
        TraceContextPropagator::new().inject_context(&context, &mut Metadata(&mut metadata));
        let headers = metadata.into_headers();
        assert_eq!(
            headers[TRACEPARENT],
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        let got = TraceContextPropagator::new().extract(&Headers(&headers));
        assert_eq!(got.span().span_context().trace_id(), sent.trace_id());
        assert_eq!(got.span().span_context().span_id(), sent.span_id());
    }

    #[test]
    fn without_an_opentelemetry_layer_nothing_is_injected() {
        let mut metadata = MetadataMap::new();
        inject(&mut metadata);
        assert!(metadata.is_empty());
    }
}
