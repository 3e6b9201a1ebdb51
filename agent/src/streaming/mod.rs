//! berth's streaming server: where the URLs of the CRI `Exec`, `Attach` and
//! `PortForward` answers point, as kubelet's streaming contract expects.
//!
//! The CRI verb checks its request (the object exists, runs) and asks for a URL:
//! [`StreamingServer::get_exec_url`] and its siblings validate the streams asked
//! for, store the request under a single-use token that expires (one minute by
//! default) and return `http(s)://<address>:<port>/<verb>/<token>`. The client
//! (kubelet, crictl, critest) then connects there and upgrades to one of the two
//! transports client-go speaks:
//!
//! - SPDY/3.1 (`Upgrade: SPDY/3.1`, subprotocol in `X-Stream-Protocol-Version`):
//!   remotecommand `channel.k8s.io` and `v2`–`v4` (streams named by their
//!   `streamType` header; v4 ends with a JSON `metav1.Status` carrying the exit code;
//!   v3+ resize the terminal), and `portforward.k8s.io` (a data and an error stream
//!   per connection, paired by `requestID`);
//! - WebSocket: `v5.channel.k8s.io` (v4 plus stdin close), `v4.channel.k8s.io`,
//!   the older and base64 variants, port forwarding over channels, and SPDY tunnelled
//!   in WebSocket messages (`SPDY/3.1+portforward.k8s.io`, what client-go's WebSocket
//!   port-forward dialer speaks).
//!
//! The runtime's [`Runtime::exec`], [`Runtime::attach`] and
//! [`Runtime::port_forward`] do the work; this module only moves bytes. A client
//! that goes away drops the session, which ends the exec'd process.

mod channel;
pub mod config;
mod portforward;
mod remotecommand;
#[cfg(test)]
mod replay_tests;
mod server;
mod spdy;
mod tokens;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use runtimes::types::{AttachRequest, ExecStreamRequest, StdioRequest};
use runtimes::{ContainerId, Error, Runtime};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

pub use config::{StreamingConfig, TlsFiles};
use remotecommand::Target;
use server::Shared;
use tokens::{Pending, Tokens};

/// How long a finished session waits for the client to close its side, so that it
/// reads everything before the socket goes.
const LINGER: Duration = Duration::from_secs(2);

/// How long a SPDY client may take to open its streams (kubelet's default).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The running streaming server. Dropping it stops it and ends every session.
pub struct StreamingServer {
    shared: Arc<Shared>,
    base_url: String,
    local_addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl StreamingServer {
    /// Listens as `config` says and serves sessions run by `runtime`. Fails when the
    /// address cannot be bound or the TLS files cannot be loaded.
    pub async fn start(
        config: &StreamingConfig,
        runtime: Arc<dyn Runtime>,
    ) -> crate::Result<StreamingServer> {
        config.validate().map_err(|message| crate::Error::Config {
            path: "streaming".into(),
            message,
        })?;
        let tls = config.tls.as_ref().map(load_tls).transpose()?;
        let requested = SocketAddr::new(config.address, config.port);
        let listener = TcpListener::bind(requested).await.map_err(|e| {
            crate::Error::io(format!("streaming server: listening on {requested}"), e)
        })?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| crate::Error::io("streaming server: reading the bound address", e))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let shared = Arc::new(Shared {
            runtime,
            tokens: Tokens::new(config.token_ttl()),
            stop: CancellationToken::new(),
            creation_timeout: STREAM_CREATION_TIMEOUT,
        });
        let accept = tokio::spawn(server::accept_loop(listener, tls, shared.clone()));
        tracing::info!(address = %local_addr, tls = scheme == "https", "streaming server listening");
        Ok(StreamingServer {
            shared,
            base_url: format!("{scheme}://{local_addr}"),
            local_addr,
            accept,
        })
    }

    /// The address the server listens on (with the real port when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http(s)://address:port`, the prefix of every URL handed out.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The URL for an interactive exec of `request.cmd` in the container `id`. The
    /// caller has checked that `id` exists and runs.
    pub fn get_exec_url(
        &self,
        id: &ContainerId,
        request: ExecStreamRequest,
    ) -> runtimes::Result<String> {
        validate_exec(&request)?;
        self.url(Pending::Session(Target::Exec {
            id: id.clone(),
            request,
        }))
    }

    /// The URL for an attach to the container `id`. The caller has checked that
    /// `id` exists and runs.
    pub fn get_attach_url(
        &self,
        id: &ContainerId,
        request: AttachRequest,
    ) -> runtimes::Result<String> {
        validate_stdio(&request.stdio)?;
        self.url(Pending::Session(Target::Attach {
            id: id.clone(),
            request,
        }))
    }

    /// The URL for port forwarding into the sandbox `sandbox`. `ports` are the CRI
    /// request's (see [`validate_ports`]); only the WebSocket channel protocol uses
    /// them, SPDY clients name a port per stream.
    pub fn get_port_forward_url(
        &self,
        sandbox: &ContainerId,
        ports: Vec<u16>,
    ) -> runtimes::Result<String> {
        self.url(Pending::PortForward {
            sandbox: sandbox.clone(),
            ports,
        })
    }

    fn url(&self, pending: Pending) -> runtimes::Result<String> {
        let path = pending.path();
        let token = self.shared.tokens.insert(pending)?;
        Ok(format!("{}/{path}/{token}", self.base_url))
    }

    /// Stops accepting and ends every session (exec'd processes are killed), without
    /// waiting for the accept loop (see [`StreamingServer::shutdown`]).
    pub fn stop(&self) {
        self.shared.stop.cancel();
    }

    /// Stops accepting and ends every session (exec'd processes are killed).
    pub async fn shutdown(mut self) {
        self.shared.stop.cancel();
        let _ = (&mut self.accept).await;
    }
}

impl Drop for StreamingServer {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

/// Checks the streams of an exec: as kubelet, `InvalidArgument` without a command,
/// without any stream, or with both a terminal and stderr.
pub fn validate_exec(request: &ExecStreamRequest) -> runtimes::Result<()> {
    if request.cmd.is_empty() {
        return Err(Error::InvalidSpec("cmd: an exec needs a command".into()));
    }
    validate_stdio(&request.stdio)
}

/// Checks the streams of an exec or attach (see [`validate_exec`]).
pub fn validate_stdio(stdio: &StdioRequest) -> runtimes::Result<()> {
    if stdio.tty && stdio.stderr {
        return Err(Error::InvalidSpec(
            "tty and stderr cannot both be true: a terminal has one output stream".into(),
        ));
    }
    if !stdio.stdin && !stdio.stdout && !stdio.stderr {
        return Err(Error::InvalidSpec(
            "one of stdin, stdout, or stderr must be set".into(),
        ));
    }
    Ok(())
}

/// The ports of a CRI `PortForwardRequest` as TCP ports: `InvalidArgument` for one
/// outside 1–65535.
pub fn validate_ports(ports: &[i32]) -> runtimes::Result<Vec<u16>> {
    ports
        .iter()
        .map(|&port| {
            u16::try_from(port).ok().filter(|p| *p != 0).ok_or_else(|| {
                Error::InvalidSpec(format!("port: {port} is not a TCP port (1-65535)"))
            })
        })
        .collect()
}

/// The TLS acceptor for `files`; the error names the file at fault.
fn load_tls(files: &TlsFiles) -> crate::Result<TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let bad = |path: &std::path::Path, message: String| crate::Error::Config {
        path: path.to_path_buf(),
        message: format!("streaming.tls: {message}"),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| bad(&files.cert, format!("cannot read the certificate: {e}")))?;
    if certs.is_empty() {
        return Err(bad(&files.cert, "no certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| bad(&files.key, format!("cannot read the private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(&files.cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad(&files.cert, format!("certificate and key do not fit: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stdio(tty: bool, stdin: bool, stdout: bool, stderr: bool) -> StdioRequest {
        StdioRequest {
            tty,
            stdin,
            stdout,
            stderr,
        }
    }

    #[test]
    fn requests_are_checked_as_kubelet_does() {
        let ok = ExecStreamRequest {
            cmd: vec!["sh".into()],
            stdio: stdio(true, true, true, false),
        };
        validate_exec(&ok).unwrap();
        let no_cmd = ExecStreamRequest {
            cmd: vec![],
            ..ok.clone()
        };
        assert!(matches!(validate_exec(&no_cmd), Err(Error::InvalidSpec(_))));
        let tty_stderr = validate_stdio(&stdio(true, true, true, true)).unwrap_err();
        assert!(
            tty_stderr.to_string().contains("tty and stderr"),
            "{tty_stderr}"
        );
        let nothing = validate_stdio(&stdio(false, false, false, false)).unwrap_err();
        assert!(matches!(nothing, Error::InvalidSpec(_)));
        validate_stdio(&stdio(false, false, false, true)).unwrap();
    }

    #[test]
    fn ports_must_be_tcp_ports() {
        assert_eq!(validate_ports(&[80, 65535]).unwrap(), [80, 65535]);
        for bad in [0, -1, 65536] {
            assert!(
                matches!(validate_ports(&[bad]), Err(Error::InvalidSpec(_))),
                "{bad}"
            );
        }
    }
}
