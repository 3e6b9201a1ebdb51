//! A tower layer on the gRPC server: one span per CRI call, and the one log event of a
//! failed call, emitted when its status leaves the server.
//!
//! Handlers run inside the span and add the ids they work on with
//! [`record`](super::record), so the failure event carries method and ids together.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tonic::codegen::http;
use tonic::{Code, Status};
use tower::{Layer, Service};
use tracing::field::Empty;
use tracing::Instrument;

use super::metrics::metrics;

/// Wraps a gRPC service so each call runs in a `cri` span.
#[derive(Debug, Clone, Copy, Default)]
pub struct CriTraceLayer;

impl<S> Layer<S> for CriTraceLayer {
    type Service = CriTrace<S>;

    fn layer(&self, inner: S) -> CriTrace<S> {
        CriTrace { inner }
    }
}

/// The service [`CriTraceLayer`] produces.
#[derive(Debug, Clone)]
pub struct CriTrace<S> {
    inner: S,
}

impl<S, B, R> Service<http::Request<B>> for CriTrace<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        // `/runtime.v1.RuntimeService/Version` → service and method.
        let (service, method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or(("", path));
        let span = tracing::info_span!(
            "cri",
            otel.name = path,
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            rpc.grpc.status_code = Empty,
            pod_sandbox_id = Empty,
            container_id = Empty,
            berth.container_id = Empty,
            image = Empty,
        );
        let method = method.to_string();
        let in_flight = metrics().call_started(&method);
        let started = Instant::now();
        let future = span.in_scope(|| self.inner.call(request));
        Box::pin(
            async move {
                let result = future.await;
                let code = match &result {
                    Ok(response) => report(response.headers()),
                    // The transport failed before an answer: grpc-go's name for it.
                    Err(_) => Code::Unknown,
                };
                metrics().call_answered(&method, code, started.elapsed());
                drop(in_flight);
                result
            }
            .instrument(span),
        )
    }
}

/// Logs a failed call once, and returns the call's code. A failed unary call is
/// answered "trailers-only", so its status is in the response headers; a successful
/// one has no status there.
fn report(headers: &http::HeaderMap) -> Code {
    if !headers.contains_key("grpc-status") {
        return Code::Ok;
    }
    let Some(status) = Status::from_header_map(headers) else {
        return Code::Ok;
    };
    let code = status.code();
    if code == Code::Ok {
        return code;
    }
    let span = tracing::Span::current();
    span.record("rpc.grpc.status_code", i32::from(code));
    span.record("otel.status_code", "ERROR");
    let message = status.message();
    match severity(code) {
        Severity::Fault => {
            tracing::error!(grpc.code = ?code, grpc.message = message, "CRI call failed")
        }
        Severity::Refused => {
            tracing::warn!(grpc.code = ?code, grpc.message = message, "CRI call refused")
        }
        Severity::Routine => {
            tracing::info!(grpc.code = ?code, grpc.message = message, "CRI call answered with an error")
        }
    }
    code
}

/// How loudly a failed call is logged.
#[derive(Debug, PartialEq, Eq)]
enum Severity {
    /// berth or a backend failed: someone should look.
    Fault,
    /// The caller asked for something berth refuses or cannot reach right now.
    Refused,
    /// Part of normal operation (kubelet asks for objects that are gone).
    Routine,
}

fn severity(code: Code) -> Severity {
    match code {
        Code::Internal | Code::DataLoss | Code::Unknown => Severity::Fault,
        Code::NotFound | Code::Cancelled => Severity::Routine,
        _ => Severity::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_errors_and_missing_objects_are_routine() {
        assert_eq!(severity(Code::Internal), Severity::Fault);
        assert_eq!(severity(Code::DataLoss), Severity::Fault);
        assert_eq!(severity(Code::NotFound), Severity::Routine);
        assert_eq!(severity(Code::InvalidArgument), Severity::Refused);
        assert_eq!(severity(Code::Unimplemented), Severity::Refused);
    }
}
