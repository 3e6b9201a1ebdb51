//! `berth delegate`: serve the delegate protocol (`proto/delegate.proto`) for this
//! berth's own youki backend, so a node agent elsewhere (a Windows node, for the
//! berth in its WSL2 VM) runs pods here.
//!
//! Start-up is `berth serve`'s (the same backends, its own `state_dir` and `run_dir`,
//! pods that outlived a previous run recovered); only the protocol differs. It serves
//! on a unix socket, and on TCP with mutual TLS only: a client without a certificate
//! signed by `delegate.tls.client_ca` is refused in the handshake.

mod port_forward;
mod service;
mod stream;

use berth_proto::delegate::delegate_server::DelegateServer;
use tokio::sync::watch;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::backends;
use crate::config::{Config, DelegateServerTls};
use crate::error::{Error, Result};
use crate::server::{Signals, SocketGuard};
use crate::store::Store;
use crate::telemetry::DelegateTraceLayer;

pub use service::DelegateService;

/// The largest message either side sends (a container spec with a big OCI spec).
const MAX_MESSAGE: usize = 64 << 20;

/// Serves the delegate protocol as `config.delegate` says until SIGTERM or SIGINT.
pub async fn serve(config: Config) -> Result<()> {
    let mut signals = Signals::new()?;
    let socket = match &config.delegate.socket {
        Some(path) => Some(SocketGuard::acquire(path)?),
        None => None,
    };
    let store = Store::open(&config.state_dir)?;
    let backends = backends::build(&config, &store).await?;
    let service = || {
        DelegateServer::new(DelegateService::new(backends.local.clone()))
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    };
    let (stop, stopping) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut servers = tokio::task::JoinSet::new();
    if let Some(socket) = &socket {
        let listener = socket.bind()?;
        let incoming = UnixListenerStream::new(listener);
        let server = Server::builder()
            .layer(DelegateTraceLayer)
            .add_service(service())
            .serve_with_incoming_shutdown(incoming, stopped(stopping.clone()));
        let address = socket.path().display().to_string();
        servers.spawn(async move { server.await.map_err(|e| (address, e)) });
        tracing::info!(socket = %socket.path().display(), "serving the delegate protocol");
    }
    if let Some(tcp) = &config.delegate.tcp {
        let tls = config.delegate.tls.as_ref().ok_or_else(|| Error::Config {
            path: "<config>".into(),
            message: "delegate.tls: required with delegate.tcp".into(),
        })?;
        let listener = tokio::net::TcpListener::bind(tcp)
            .await
            .map_err(|e| Error::io(format!("binding the delegate's TCP address {tcp}"), e))?;
        let bound = listener
            .local_addr()
            .map_err(|e| Error::io("reading the delegate's TCP address", e))?;
        let server = Server::builder()
            .tls_config(server_tls(tls)?)
            .map_err(|e| Error::DelegateServe {
                address: tcp.clone(),
                source: e,
            })?
            .layer(DelegateTraceLayer)
            .add_service(service())
            // TCP_NODELAY on each connection: without it a stream's small frames
            // wait for the node's delayed ACK (40 ms an exec on this machine).
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                stopped(stopping.clone()),
            );
        let address = tcp.clone();
        servers.spawn(async move { server.await.map_err(|e| (address, e)) });
        tracing::info!(address = %bound, "serving the delegate protocol over TCP with mutual TLS");
    }
    if servers.is_empty() {
        return Err(Error::Config {
            path: "<config>".into(),
            message: "delegate: give a socket or a tcp address to serve on".into(),
        });
    }
    let mut failed = None;
    tokio::select! {
        name = signals.recv() => tracing::info!(signal = name, "stopping"),
        Some(result) = servers.join_next() => {
            if let Ok(Err(e)) = result {
                failed = Some(e);
            }
        }
    }
    let _ = stop.send(true);
    while servers.join_next().await.is_some() {}
    if let Some(socket) = &socket {
        socket.remove_socket();
    }
    match failed {
        Some((address, source)) => Err(Error::DelegateServe { address, source }),
        None => Ok(()),
    }
}

/// The server's TLS: its identity, and the CA every client certificate must chain to
/// (tonic then requires one: a client without it fails the handshake).
fn server_tls(tls: &DelegateServerTls) -> Result<ServerTlsConfig> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|e| {
            Error::io(
                format!("reading the delegate TLS file {}", path.display()),
                e,
            )
        })
    };
    Ok(ServerTlsConfig::new()
        .identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?))
        .client_ca_root(Certificate::from_pem(read(&tls.client_ca)?)))
}
