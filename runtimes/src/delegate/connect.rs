//! Reaching the delegate: a lazily dialled gRPC channel over a unix socket or TCP with
//! mutual TLS, and the mapping of its answers to this crate's errors.

use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;

use super::DelegateConfig;
use crate::error::{error_chain, Error, Result};

/// How long dialling the delegate (TLS handshake included) may take before a call
/// fails `Unavailable`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// HTTP/2 pings on an open connection, so a delegate that went silent (a VM paused,
/// a link cut) fails its calls `Unavailable` after at most interval + timeout,
/// rather than holding them for ever.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The channel settings both transports share.
fn settings(endpoint: Endpoint) -> Endpoint {
    endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
}

/// The channel to the delegate `config` names. It dials on first use and again after
/// the delegate went away, so a node whose delegate is down still starts.
pub fn channel(config: &DelegateConfig) -> Result<Channel> {
    let address = config.address.as_str();
    if let Some(path) = address.strip_prefix("unix://") {
        let path = std::path::PathBuf::from(path);
        // tonic wants an http URI; the connector ignores it and dials the socket.
        let endpoint = settings(
            Endpoint::try_from("http://[::1]:1")
                .map_err(|e| Error::internal("delegate", "making the channel", e))?,
        );
        return Ok(
            endpoint.connect_with_connector_lazy(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            })),
        );
    }
    if !address.starts_with("https://") {
        return Err(Error::InvalidSpec(format!(
            "delegate address `{address}` is neither unix:///path nor https://host:port"
        )));
    }
    let tls = config.tls.as_ref().ok_or_else(|| {
        Error::InvalidSpec(format!(
            "delegate address `{address}` is TCP, which needs tls (ca, cert, key)"
        ))
    })?;
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            Error::io(
                format!("reading the delegate TLS file {}", path.display()),
                e,
            )
        })
    };
    let mut client_tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&tls.ca)?))
        .identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?));
    if !tls.server_name.is_empty() {
        client_tls = client_tls.domain_name(tls.server_name.clone());
    }
    let endpoint = Endpoint::from_shared(address.to_string())
        .map_err(|e| Error::InvalidSpec(format!("delegate address `{address}`: {e}")))?
        .tls_config(client_tls)
        .map_err(|e| Error::internal("delegate", "setting up TLS", e))?;
    // A connector of our own: tonic bounds a custom connector's whole connect (its
    // TLS handshake included) by the connect timeout, where its built-in one bounds
    // only the TCP connect, and a peer that takes the connection and never answers
    // would hold every call for ever.
    Ok(
        settings(endpoint).connect_with_connector_lazy(tower::service_fn(
            |uri: tonic::codegen::http::Uri| async move {
                let host = uri.host().unwrap_or_default();
                let port = uri.port_u16().unwrap_or(443);
                let stream = tokio::net::TcpStream::connect(format!("{host}:{port}")).await?;
                stream.set_nodelay(true)?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            },
        )),
    )
}

/// The response metadata key of a delegate's `WrongPlatform` refusal: a JSON array
/// `[image, platform, backend, supported]`.
pub const WRONG_PLATFORM: &str = "berth-wrong-platform";

/// A failed call as this crate's error. A transport failure (refused, reset, TLS) is
/// [`Error::Unavailable`] naming the delegate; a platform refusal is
/// [`Error::WrongPlatform`] again; anything else the delegate answered keeps its code
/// ([`Error::Delegated`]).
pub fn from_status(service: String, status: tonic::Status) -> Error {
    let wrong_platform = status
        .metadata()
        .get(WRONG_PLATFORM)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| serde_json::from_str::<[String; 4]>(v).ok());
    if let Some([image, platform, backend, supported]) = wrong_platform {
        return Error::WrongPlatform {
            image,
            platform,
            backend: format!("{service} ({backend})"),
            supported,
        };
    }
    match status.code() {
        Code::Unavailable | Code::Unknown if is_transport(&status) => Error::Unavailable {
            service,
            message: error_chain(&status),
        },
        code => Error::Delegated {
            delegate: service,
            code,
            message: status.message().to_string(),
        },
    }
}

/// True when tonic made the status itself because the connection failed (its source
/// is a transport error), not the delegate.
/// Whether `status` is a dial that timed out (the connect timeout, which bounds the
/// TLS handshake too, expired): the peer took no connection or never answered one.
/// A call that merely waited for another call's dial on the shared channel fails with
/// this error however briefly it waited itself, so the kind, not the time, tells a
/// silent peer.
pub fn timed_out(status: &tonic::Status) -> bool {
    use std::error::Error as _;
    let mut source = status.source();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        source = e.source();
    }
    false
}

fn is_transport(status: &tonic::Status) -> bool {
    use std::error::Error as _;
    status.source().is_some() || status.message().contains("transport error")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(address: &str) -> DelegateConfig {
        DelegateConfig {
            address: address.to_string(),
            os: vec!["linux".into()],
            tls: None,
            node: "n1".into(),
        }
    }

    #[test]
    fn tcp_without_tls_is_refused() {
        let err = channel(&config("https://127.0.0.1:7000")).unwrap_err();
        assert!(err.to_string().contains("needs tls"), "{err}");
        let err = channel(&config("tcp://x")).unwrap_err();
        assert!(err.to_string().contains("neither"), "{err}");
    }

    #[tokio::test]
    async fn an_absent_delegate_is_unavailable_naming_it() {
        use crate::runtime::Runtime;
        let dir = tempfile::tempdir().unwrap();
        let address = format!("unix://{}", dir.path().join("d.sock").display());
        let delegate = super::super::DelegateRuntime::open(config(&address)).unwrap();
        let err = delegate.ready().await.unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
        assert!(err.to_string().contains(&address), "{err}");
        let id = crate::ContainerId::new("web.default", "sandbox", 0, "n1").unwrap();
        let err = delegate.pod_sandbox_status(&id).await.unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    }
}
