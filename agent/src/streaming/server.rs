//! The HTTP side of the streaming server: accept (optionally TLS), route
//! `/{exec,attach,portforward}/{token}` (GET or POST, as kubelet), spend the token,
//! negotiate the transport and subprotocol, answer `101 Switching Protocols` and
//! hand the upgraded connection to the protocol.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use runtimes::Runtime;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::remotecommand;
use super::tokens::{Pending, Tokens};
use super::{portforward, ws};
use crate::telemetry::metrics;

/// How long a client may take to send its request headers or finish TLS.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The header that negotiates a SPDY subprotocol.
const PROTOCOL_VERSION: &str = "x-stream-protocol-version";

/// What every connection needs.
pub struct Shared {
    /// Starts the sessions.
    pub runtime: Arc<dyn Runtime>,
    /// The pending requests.
    pub tokens: Tokens,
    /// Cancelled when the server stops: ends accepting and every session.
    pub stop: CancellationToken,
    /// How long a SPDY client may take to open its streams (kubelet: 30 s).
    pub creation_timeout: Duration,
}

type Answer = Response<Full<Bytes>>;

/// Accepts connections until the server stops.
pub async fn accept_loop(listener: TcpListener, tls: Option<TlsAcceptor>, shared: Arc<Shared>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shared.stop.cancelled() => return,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of file descriptors, most likely: let some connections end.
                tracing::warn!(error = %e, "streaming server cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_http(tcp, shared).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => serve_http(stream, shared).await,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "streaming: TLS handshake failed")
                        }
                        Err(_) => tracing::debug!("streaming: TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

async fn serve_http<IO>(io: IO, shared: Arc<Shared>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let stop = shared.stop.clone();
    let service = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(route(shared, req)) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::select! {
        served = conn => {
            if let Err(e) = served {
                tracing::debug!(error = %e, "streaming: HTTP connection failed");
            }
        }
        _ = stop.cancelled() => {}
    }
}

fn text(status: StatusCode, message: impl Into<String>) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::from(message.into() + "\n")));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    answer
}

fn not_found() -> Answer {
    text(StatusCode::NOT_FOUND, "404 page not found")
}

fn route(shared: Arc<Shared>, mut req: Request<hyper::body::Incoming>) -> Answer {
    if !matches!(*req.method(), Method::GET | Method::POST) {
        return text(StatusCode::METHOD_NOT_ALLOWED, "405: Method Not Allowed");
    }
    let mut parts = req.uri().path().trim_start_matches('/').split('/');
    let (Some(kind), Some(token), None) = (parts.next(), parts.next(), parts.next()) else {
        return not_found();
    };
    let Some(pending) = shared.tokens.consume(token, kind) else {
        return not_found();
    };
    let upgrade = hyper::upgrade::on(&mut req);
    if ws::is_websocket(req.headers()) {
        websocket(shared, req.headers(), pending, upgrade)
    } else {
        spdy(shared, req.headers(), pending, upgrade)
    }
}

/// Comma-separated values of every `name` header, trimmed.
fn list(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

/// The first protocol the client offers that the server speaks (client order, as
/// kubelet's negotiation).
fn negotiate(offered: &[String], supported: &[&'static str]) -> Option<&'static str> {
    offered
        .iter()
        .find_map(|o| supported.iter().find(|s| **s == o.as_str()))
        .copied()
}

fn switching(headers: &[(&'static str, String)]) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::new()));
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            answer.headers_mut().insert(*name, value);
        }
    }
    answer
}

fn spdy(shared: Arc<Shared>, headers: &HeaderMap, pending: Pending, upgrade: OnUpgrade) -> Answer {
    let offered = list(headers, PROTOCOL_VERSION);
    if offered.is_empty() {
        return text(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: X-Stream-Protocol-Version is required",
        );
    }
    let supported = match pending {
        Pending::PortForward { .. } => portforward::SPDY_PROTOCOLS,
        _ => remotecommand::SPDY_PROTOCOLS,
    };
    let Some(protocol) = negotiate(&offered, supported) else {
        let mut answer = text(
            StatusCode::FORBIDDEN,
            format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {supported:?}"
            ),
        );
        for accepted in supported {
            answer.headers_mut().append(
                "x-accepted-stream-protocol-versions",
                HeaderValue::from_static(accepted),
            );
        }
        return answer;
    };
    let upgrading = |name, token: &str| {
        list(headers, name)
            .iter()
            .any(|v| v.eq_ignore_ascii_case(token))
    };
    if !upgrading("connection", "upgrade") || !upgrading("upgrade", "spdy/3.1") {
        return text(
            StatusCode::BAD_REQUEST,
            "unable to upgrade: missing upgrade headers in request",
        );
    }
    tokio::spawn(async move {
        let io = match upgrade.await {
            Ok(upgraded) => TokioIo::new(upgraded),
            Err(e) => return tracing::debug!(error = %e, "streaming: upgrade failed"),
        };
        let _session = metrics().session_started(pending.path());
        let (runtime, stop) = (shared.runtime.clone(), shared.stop.clone());
        let timeout = shared.creation_timeout;
        match pending {
            Pending::Session(target) => {
                remotecommand::over_spdy(io, protocol, runtime, target, timeout, stop).await
            }
            Pending::PortForward { sandbox, .. } => {
                portforward::over_spdy(io, runtime, sandbox, timeout, stop).await
            }
        }
    });
    switching(&[
        ("connection", "Upgrade".into()),
        ("upgrade", "SPDY/3.1".into()),
        (PROTOCOL_VERSION, protocol.into()),
    ])
}

fn websocket(
    shared: Arc<Shared>,
    headers: &HeaderMap,
    pending: Pending,
    upgrade: OnUpgrade,
) -> Answer {
    let accept = match ws::accept_key(headers) {
        Ok(accept) => accept,
        Err(why) => return text(StatusCode::BAD_REQUEST, format!("unable to upgrade: {why}")),
    };
    let offered = ws::offered_protocols(headers);
    let supported: Vec<&'static str> = match &pending {
        Pending::PortForward { .. } => std::iter::once(portforward::TUNNEL_PROTOCOL)
            .chain(portforward::WEBSOCKET_PROTOCOLS.iter().copied())
            .collect(),
        _ => remotecommand::WEBSOCKET_PROTOCOLS.to_vec(),
    };
    // A client that offers no subprotocol gets the original one.
    let protocol = match negotiate(&offered, &supported) {
        Some(protocol) => Some(protocol),
        None if offered.is_empty() => None,
        None => {
            return text(
                StatusCode::FORBIDDEN,
                format!(
                    "requested protocol(s) are not supported: {offered:?}; supports {supported:?}"
                ),
            )
        }
    };
    if let Pending::PortForward { ports, .. } = &pending {
        if protocol != Some(portforward::TUNNEL_PROTOCOL) {
            if ports.is_empty() {
                return text(
                    StatusCode::BAD_REQUEST,
                    "port forwarding over WebSocket channels needs the ports in the PortForward request",
                );
            }
            if ports.len() > portforward::MAX_WEBSOCKET_PORTS {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "at most {} ports can be forwarded over one WebSocket",
                        portforward::MAX_WEBSOCKET_PORTS
                    ),
                );
            }
        }
    }
    tokio::spawn(async move {
        let io = match upgrade.await {
            Ok(upgraded) => TokioIo::new(upgraded),
            Err(e) => return tracing::debug!(error = %e, "streaming: upgrade failed"),
        };
        let socket = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
        let _session = metrics().session_started(pending.path());
        let (runtime, stop) = (shared.runtime.clone(), shared.stop.clone());
        match pending {
            Pending::Session(target) => {
                remotecommand::over_websocket(socket, protocol, runtime, target, stop).await
            }
            Pending::PortForward { sandbox, .. }
                if protocol == Some(portforward::TUNNEL_PROTOCOL) =>
            {
                let io = ws::tunnel(socket);
                let timeout = shared.creation_timeout;
                portforward::over_spdy(io, runtime, sandbox, timeout, stop).await
            }
            Pending::PortForward { sandbox, ports } => {
                portforward::over_websocket(socket, protocol, runtime, sandbox, ports, stop).await
            }
        }
    });
    let mut answer = vec![
        ("connection", "Upgrade".to_string()),
        ("upgrade", "websocket".to_string()),
        ("sec-websocket-accept", accept),
    ];
    if let Some(protocol) = protocol {
        answer.push(("sec-websocket-protocol", protocol.to_string()));
    }
    switching(&answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_the_clients_order() {
        let offered = vec![
            "v3.channel.k8s.io".to_string(),
            "v4.channel.k8s.io".to_string(),
        ];
        assert_eq!(
            negotiate(&offered, remotecommand::SPDY_PROTOCOLS),
            Some("v3.channel.k8s.io")
        );
        assert_eq!(
            negotiate(&["v9".to_string()], remotecommand::SPDY_PROTOCOLS),
            None
        );
    }
}
