//! Answers `DEADLINE_EXCEEDED` when a call outlives the caller's `grpc-timeout`.
//!
//! tonic enforces `grpc-timeout` itself, outside every layer berth adds, and answers
//! an expired call with `CANCELLED` ("Timeout expired"), which gRPC reserves for a
//! caller that gave up; the call also vanishes from the logs, since the trace layer's
//! future is simply dropped. This layer runs the same clock inside tonic's: its timer
//! starts first (when the call arrives, before tonic's), so it answers first, with
//! the code gRPC specifies for a passed deadline, and the trace layer logs the
//! failure like any other. Work the call started and that outlives it by design
//! (an image pull, which a retry joins) is not affected.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::codegen::http;
use tower::{Layer, Service};

use crate::status::from_runtime;

/// Gives each call at most the time its `grpc-timeout` header allows.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeadlineLayer;

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline { inner }
    }
}

/// The service [`DeadlineLayer`] produces.
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
}

impl<S, B, R> Service<http::Request<B>> for Deadline<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let timeout = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let method = request
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let future = self.inner.call(request);
        let Some(timeout) = timeout else {
            return Box::pin(future);
        };
        // Created now, not when first polled: the deadline counts from the call's arrival.
        let expiry = tokio::time::sleep(timeout);
        Box::pin(async move {
            tokio::select! {
                biased;
                answer = future => answer,
                () = expiry => {
                    let error = runtimes::Error::DeadlineExceeded {
                        operation: method,
                        after: timeout,
                    };
                    Ok(from_runtime(error).into_http())
                }
            }
        })
    }
}

/// A `grpc-timeout` value: at most 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`),
/// as the gRPC HTTP/2 protocol defines it. Anything else is no deadline, as for tonic.
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let split = value.len().checked_sub(1)?;
    let (digits, unit) = (value.get(..split)?, value.get(split..)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tonic::Code;

    use super::*;

    #[test]
    fn parses_every_unit_and_refuses_the_rest() {
        assert_eq!(parse_grpc_timeout("1m"), Some(Duration::from_millis(1)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("4S"), Some(Duration::from_secs(4)));
        assert_eq!(parse_grpc_timeout("5u"), Some(Duration::from_micros(5)));
        assert_eq!(
            parse_grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "m", "1", "1x", "123456789S", "-1S", "+1S", "1.5S", "é"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    /// A service that answers after `delay` with an empty 200.
    #[derive(Clone)]
    struct Slow(Duration);

    impl Service<http::Request<()>> for Slow {
        type Response = http::Response<String>;
        type Error = Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            let delay = self.0;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(http::Response::new("done".to_string()))
            })
        }
    }

    fn request(timeout: Option<&str>) -> http::Request<()> {
        let mut builder = http::Request::builder().uri("/runtime.v1.ImageService/PullImage");
        if let Some(t) = timeout {
            builder = builder.header("grpc-timeout", t);
        }
        builder.body(()).unwrap()
    }

    #[tokio::test]
    async fn an_expired_call_is_deadline_exceeded_naming_the_method() {
        let mut service = DeadlineLayer.layer(Slow(Duration::from_secs(5)));
        let response = service.call(request(Some("10m"))).await.unwrap();
        let status = tonic::Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert!(status.message().contains("PullImage"), "{status:?}");
        assert!(status.message().contains("10ms"), "{status:?}");
    }

    #[tokio::test]
    async fn calls_within_their_deadline_or_without_one_are_untouched() {
        let mut service = DeadlineLayer.layer(Slow(Duration::from_millis(5)));
        for timeout in [Some("10S"), None, Some("garbage")] {
            let response = service.call(request(timeout)).await.unwrap();
            assert_eq!(response.into_body(), "done", "{timeout:?}");
        }
    }
}
