//! Reaching containerd: a gRPC channel over its unix socket, and the namespace header
//! every namespaced call carries.

use std::error::Error as _;
use std::path::Path;

use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::Request;

use crate::{Error, Result};

/// The gRPC metadata key containerd reads a call's namespace from.
pub const NAMESPACE_HEADER: &str = "containerd-namespace";

/// A channel to the containerd serving the unix socket `address`.
///
/// Connects at once, so an absent or dead containerd is reported here, as
/// [`Error::Unavailable`] naming the address. tonic wants an http URI even for a unix
/// socket; `containerd_client::connect` gives it a dummy one and a connector that dials
/// the socket. Later, when containerd restarts, the channel dials again by itself: the
/// calls made while containerd is down fail with `Unavailable`, the first one after it
/// is back succeeds.
pub async fn connect(address: &Path) -> Result<Channel> {
    containerd_client::connect(address)
        .await
        .map_err(|e| Error::Unavailable {
            service: format!("containerd at {}", address.display()),
            message: chain(&e),
        })
}

/// `message` as a request in containerd namespace `namespace` (the
/// `containerd-namespace` header). Namespaced services (containers, tasks, snapshots,
/// leases, content, images, events) refuse a call without it.
pub fn with_namespace<T>(namespace: &str, message: T) -> Result<Request<T>> {
    let value = namespace_header(namespace)?;
    let mut request = Request::new(message);
    request.metadata_mut().insert(NAMESPACE_HEADER, value);
    Ok(request)
}

/// The value of the namespace header for `namespace`, checked once so that a backend
/// can stamp it on every call.
pub fn namespace_header(namespace: &str) -> Result<AsciiMetadataValue> {
    MetadataValue::try_from(namespace).map_err(|_| {
        Error::InvalidSpec(format!(
            "containerd namespace {namespace:?} is not a valid gRPC header value"
        ))
    })
}

/// A channel to containerd's socket at `address` that dials on first use (and again
/// after containerd restarts), so a berth whose containerd is down still starts and
/// serves its other backends; calls made meanwhile fail as [`connect`] does.
pub fn connect_lazy(address: &Path) -> Result<Channel> {
    let path = address.to_path_buf();
    // tonic wants an http URI; the connector ignores it and dials the socket.
    let endpoint = Endpoint::try_from("http://[::1]:1")
        .map_err(|e| Error::internal("containerd", "making the channel", e))?;
    Ok(
        endpoint.connect_with_connector_lazy(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        })),
    )
}

/// An error with its causes: tonic's transport error says only "transport error", the
/// reason (no such file, connection refused) is in its sources.
fn chain(e: &tonic::transport::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_namespace_sets_the_header() {
        let request = with_namespace("berth", ()).unwrap();
        assert_eq!(request.metadata().get(NAMESPACE_HEADER).unwrap(), "berth");
    }

    #[test]
    fn with_namespace_rejects_what_no_header_can_carry() {
        let err = with_namespace("bad\nname", ()).unwrap_err();
        assert!(matches!(err, Error::InvalidSpec(_)), "{err}");
    }

    #[tokio::test]
    async fn connect_names_an_absent_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("containerd.sock");
        let err = connect(&socket).await.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Unavailable { .. }), "{text}");
        assert!(text.contains(&socket.display().to_string()), "{text}");
        assert!(text.contains("No such file"), "{text}");
    }
}
