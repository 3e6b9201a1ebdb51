//! The delegate protocol's server span: one per call `berth delegate` serves, a child
//! of the node agent's span when the request carries its `traceparent`, so one trace
//! spans node agent and delegate.

use std::task::{Context, Poll};

use tonic::codegen::http;
use tower::{Layer, Service};
use tracing::instrument::Instrumented;
use tracing::Instrument;

/// Wraps the delegate's gRPC service so each call runs in a `delegate` span.
#[derive(Debug, Clone, Copy, Default)]
pub struct DelegateTraceLayer;

impl<S> Layer<S> for DelegateTraceLayer {
    type Service = DelegateTrace<S>;

    fn layer(&self, inner: S) -> DelegateTrace<S> {
        DelegateTrace { inner }
    }
}

/// The service [`DelegateTraceLayer`] produces.
#[derive(Debug, Clone)]
pub struct DelegateTrace<S> {
    inner: S,
}

impl<S, B> Service<http::Request<B>> for DelegateTrace<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let method = path.rsplit('/').next().unwrap_or(path);
        // Debug: a delegate logs at info without a span per call, as before.
        let span = tracing::debug_span!(
            "delegate",
            otel.name = path,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.method = method,
        );
        runtimes::trace_context::adopt(&span, request.headers());
        let future = span.in_scope(|| self.inner.call(request));
        future.instrument(span)
    }
}
