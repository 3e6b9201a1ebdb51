//! OpenTelemetry trace export (`telemetry.otlp`): berth's tracing spans become OTel
//! spans through `tracing-opentelemetry` and leave in batches over OTLP. Nothing here
//! exists unless an endpoint is configured.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use crate::config::{OtlpConfig, OtlpProtocol};
use crate::error::{Error, Result};

/// The export pipeline; [`Traces::shutdown`] sends what is still queued.
#[derive(Debug)]
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// The pipeline `config` asks for, or `None` without an endpoint. Must run inside
    /// the tokio runtime: the exporter's connection and the batch task live on it.
    pub fn start(config: &OtlpConfig, node_id: &str) -> Result<Option<Traces>> {
        let Some(endpoint) = &config.endpoint else {
            return Ok(None);
        };
        let exporter = match config.protocol {
            OtlpProtocol::Grpc => SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build(),
            OtlpProtocol::HttpProtobuf => SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(http_traces_url(endpoint))
                .build(),
        }
        .map_err(|e| Error::Telemetry(format!("telemetry.otlp.endpoint `{endpoint}`: {e}")))?;
        // The tokio runtime's batch task, not the SDK's own thread: the gRPC exporter
        // needs the runtime to dial and to time out.
        let batches = BatchSpanProcessor::builder(exporter, Tokio).build();
        // Configured attributes first, so they may set service.instance.id; the
        // service name always comes from `service_name`.
        let mut attributes = vec![KeyValue::new("service.instance.id", node_id.to_string())];
        attributes.extend(
            config
                .resource_attributes
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        );
        let resource = Resource::builder()
            .with_attributes(attributes)
            .with_service_name(config.service_name.clone())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(batches)
            // A caller's sampled flag decides for its calls; the ratio for the rest.
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sampling_ratio,
            ))))
            .with_resource(resource)
            .build();
        Ok(Some(Traces { provider }))
    }

    /// The tracer the tracing layer turns spans into OTel spans with.
    pub(super) fn tracer(&self) -> SdkTracer {
        self.provider.tracer("berth")
    }

    /// Exports the spans still queued and stops. Call outside the runtime's tasks
    /// while it still runs: it waits for the batch task.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "exporting the last traces failed");
        }
    }
}

/// The OTLP/HTTP traces URL: `/v1/traces` on an endpoint given without a path, as the
/// collector serves it; a URL with a path is taken as it is.
fn http_traces_url(endpoint: &str) -> String {
    let after_scheme = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    match after_scheme.split_once('/') {
        Some((_, path)) if !path.is_empty() => endpoint.to_string(),
        _ => format!("{}/v1/traces", endpoint.trim_end_matches('/')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_endpoint_means_no_exporter() {
        let config = OtlpConfig::default();
        assert_eq!(config.endpoint, None);
        // Outside any runtime: nothing is built that would need one.
        assert!(Traces::start(&config, "node-a").unwrap().is_none());
    }

    // Multi-threaded: shutting down waits for the batch task on another worker.
    #[tokio::test(flavor = "multi_thread")]
    async fn an_endpoint_builds_the_pipeline_without_dialling() {
        for protocol in [OtlpProtocol::Grpc, OtlpProtocol::HttpProtobuf] {
            let config = OtlpConfig {
                endpoint: Some("http://127.0.0.1:9".into()),
                protocol,
                ..OtlpConfig::default()
            };
            let traces = Traces::start(&config, "node-a").unwrap().unwrap();
            let _ = traces.tracer();
            tokio::task::spawn_blocking(move || traces.shutdown())
                .await
                .unwrap();
        }
    }

    #[test]
    fn http_endpoints_get_the_traces_path_unless_they_have_one() {
        assert_eq!(http_traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(http_traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(
            http_traces_url("https://c/otlp/v1/traces"),
            "https://c/otlp/v1/traces"
        );
    }
}
