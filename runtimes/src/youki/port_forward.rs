//! PortForward: a TCP connection to a port on the loopback of a pod's network
//! namespace. The socket is made in a thread that joined the pinned namespace (a
//! socket belongs to the namespace it was created in for its whole life), then used
//! from tokio like any other. A pod on the host's network connects on the host's
//! loopback. No process of the pod is involved (no `socat`, no exec).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::network::{in_namespace, NsKind};
use crate::types::PortStream;

use super::backend::{blocking, Backend};
use super::records::PodPhase;

/// How long a connect may take: on a loopback it is answered at once (accepted or
/// refused); this only bounds a filtered port.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `port` on 127.0.0.1, else on ::1 (a server listening on IPv6 only),
/// from the calling thread's network namespace.
fn connect_loopback(port: u16) -> io::Result<TcpStream> {
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT) {
        Ok(stream) => Ok(stream),
        Err(first) => {
            let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
            TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|_| first)
        }
    }
}

impl Backend {
    /// Connects to `port` inside the pod `sandbox`.
    pub async fn port_forward(
        self: &Arc<Self>,
        sandbox: &ContainerId,
        port: u16,
    ) -> Result<PortStream> {
        let pod = self.pod(sandbox)?;
        if pod.phase != PodPhase::Ready {
            return Err(Error::FailedPrecondition(format!(
                "PortForward to pod sandbox {sandbox}: it is not ready"
            )));
        }
        let netns: Option<PathBuf> = pod.netns.clone();
        let what = format!("connecting to port {port} in pod sandbox {sandbox}");
        let stream = blocking(move || {
            let connected = match &netns {
                Some(ns) => in_namespace(NsKind::Net, ns, || connect_loopback(port))?,
                None => connect_loopback(port),
            };
            connected.map_err(|e| Error::io(what, e))
        })
        .await?;
        let io = |e| Error::io(format!("port {port} in pod sandbox {sandbox}"), e);
        stream.set_nonblocking(true).map_err(io)?;
        let _ = stream.set_nodelay(true);
        Ok(Box::new(
            tokio::net::TcpStream::from_std(stream).map_err(io)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_port_is_refused_and_an_open_one_connects() {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        connect_loopback(port).unwrap();
        drop(listener);
        let err = connect_loopback(port).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    }

    #[test]
    fn an_ipv6_only_server_is_reached() {
        let listener = berth_testkit::require::ipv6_loopback();
        let port = listener.local_addr().unwrap().port();
        let stream = connect_loopback(port).unwrap();
        assert!(stream.peer_addr().unwrap().is_ipv6());
    }
}
