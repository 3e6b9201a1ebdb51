//! The `/metrics` endpoint (`telemetry.metrics.address`): plain HTTP/1.1, GET only.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::metrics::{metrics, ObjectCounts};
use crate::error::{Error, Result};

/// Counts pods and containers for a scrape (blocking: it reads the state store).
pub type CountObjects = Arc<dyn Fn() -> ObjectCounts + Send + Sync>;

/// A scraper that sends nothing for this long is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The content type of the text exposition format.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Binds `address` and serves `/metrics` until the task is dropped. Returns the bound
/// address (port 0 takes a free one) and the serving task.
pub async fn serve(
    address: SocketAddr,
    count: CountObjects,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| Error::io(format!("binding the metrics endpoint {address}"), e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::io("reading the metrics endpoint's address", e))?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((io, _)) = listener.accept().await else {
                continue;
            };
            let count = count.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| answer(req, count.clone()));
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(READ_TIMEOUT)
                    .serve_connection(TokioIo::new(io), service);
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "metrics: HTTP connection failed");
                }
            });
        }
    });
    tracing::info!(address = %bound, "serving Prometheus metrics at /metrics");
    Ok((bound, task))
}

async fn answer<B>(
    req: Request<B>,
    count: CountObjects,
) -> std::result::Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, kind: &str, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        if let Ok(v) = kind.parse() {
            r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
        }
        Ok(r)
    };
    if req.uri().path() != "/metrics" {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "only /metrics is served here\n".into(),
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    let objects = tokio::task::spawn_blocking(move || count())
        .await
        .unwrap_or_default();
    reply(StatusCode::OK, TEXT_FORMAT, metrics().render(&objects))
}
