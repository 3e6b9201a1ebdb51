//! `berth serve`: take the socket, open the state, build the runtime, serve CRI until
//! SIGTERM or SIGINT, then drain and clean up.

mod authority;
mod deadline;
mod socket;

use std::future::pending;
use std::sync::Arc;
use std::time::Duration;

use berth_proto::cri::v1::image_service_server::ImageServiceServer;
use runtimes::Runtime;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::oneshot;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::StreamExt;
use tonic::transport::Server;

use crate::backends;
use crate::config::Config;
use crate::cri::{Cri, RuntimeServer};
use crate::error::{Error, Result};
use crate::reconcile::reconcile;
use crate::store::Store;
use crate::streaming::StreamingServer;
use crate::telemetry::{
    count_objects, observe_runtimes, serve_metrics, CountObjects, CriTraceLayer,
};

use authority::AuthorityFix;

pub use deadline::{Deadline, DeadlineLayer};
pub use socket::SocketGuard;

/// How long in-flight calls may run after SIGTERM or SIGINT before berth exits anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Serves CRI v1 as `config` says until SIGTERM or SIGINT. Must run inside a tokio
/// runtime.
pub async fn serve(config: Config) -> Result<()> {
    // Listen for signals before the socket exists, so none is missed once clients can connect.
    let signals = Signals::new()?;
    // Before the backends open: their recovery reconnects to supervisors.
    observe_runtimes();
    let socket = SocketGuard::acquire(&config.socket)?;
    let store = Arc::new(Store::open(&config.state_dir)?);
    let backends = backends::build(&config, &store).await?;
    let reconciled = reconcile(&store, backends.runtime.as_ref()).await;
    for failure in &reconciled.failures {
        tracing::warn!(
            failure,
            "start-up reconciliation left something for the next start"
        );
    }
    tracing::info!(
        rolled_back = reconciled.rolled_back,
        marked_not_ready = reconciled.marked_not_ready,
        kept = reconciled.kept,
        "reconciled pod sandboxes and containers with the backends"
    );
    let network = backends.network;
    // Sessions die with the agent (the supervisors then kill exec'd processes and
    // detach attached clients); the containers keep running.
    let runtime: Arc<dyn Runtime> = backends.runtime.clone();
    let streaming = Arc::new(StreamingServer::start(&config.streaming, runtime).await?);
    // Held until serving ends: dropping the task's handle does not stop it, aborting does.
    let metrics = match config.telemetry.metrics.address {
        Some(address) => {
            let counted = store.clone();
            let count: CountObjects = Arc::new(move || count_objects(&counted));
            Some(serve_metrics(address, count).await?.1)
        }
        None => None,
    };
    let cidr_network = network.clone();
    let nri = crate::nri::Nri::serve(&config.nri, store.clone())?;
    nri.launch_plugins().await;
    let cri = Cri::new(backends.runtime, store, &config)
        .with_nri(nri.clone())
        .with_network_readiness(Arc::new(move || network.status()))
        .with_pod_cidr(Arc::new(move |cidr: &str| cidr_network.set_pod_cidr(cidr)))
        .with_streaming(streaming.clone());
    let listener = socket.bind()?;
    tracing::info!(
        socket = %socket.path().display(),
        state_dir = %config.state_dir.display(),
        node_id = config.node_id,
        version = env!("CARGO_PKG_VERSION"),
        "serving CRI v1"
    );
    let served = serve_until_signal(listener, cri, signals, SHUTDOWN_GRACE).await;
    socket.remove_socket();
    // Launched NRI plugins die with berth (containerd stops them too).
    nri.stop().await;
    if let Some(task) = metrics {
        task.abort();
    }
    // The CRI services hold the other reference; they are gone once serving ended.
    match Arc::try_unwrap(streaming) {
        Ok(server) => server.shutdown().await,
        Err(shared) => shared.stop(),
    }
    served.map_err(|source| Error::Serve {
        socket: config.socket.clone(),
        source,
    })?;
    tracing::info!("stopped");
    Ok(())
}

/// Serves until a signal, then stops accepting and waits up to `grace` for the calls
/// in flight.
async fn serve_until_signal(
    listener: tokio::net::UnixListener,
    cri: Cri,
    mut signals: Signals,
    grace: Duration,
) -> Result<(), tonic::transport::Error> {
    let (runtime_service, image_service): (RuntimeServer, ImageServiceServer<Cri>) =
        cri.into_services();
    let (stopping, stopped) = oneshot::channel();
    let shutdown = async move {
        let name = signals.recv().await;
        tracing::info!(
            signal = name,
            grace_seconds = grace.as_secs(),
            "stopping: no new connections, finishing calls in flight"
        );
        let _ = stopping.send(());
    };
    // Clients not written in Go send the socket's path as :authority, which h2 refuses;
    // see `authority`.
    let incoming = UnixListenerStream::new(listener).map(|stream| stream.map(AuthorityFix::new));
    // The trace layer wraps the deadline layer, so a call past its deadline is logged.
    let server = Server::builder()
        .layer(CriTraceLayer)
        .layer(DeadlineLayer)
        .add_service(runtime_service)
        .add_service(image_service)
        .serve_with_incoming_shutdown(incoming, shutdown);
    let deadline = async move {
        match stopped.await {
            Ok(()) => tokio::time::sleep(grace).await,
            // The server ended on its own; its result decides.
            Err(_) => pending().await,
        }
    };
    tokio::select! {
        served = server => served,
        () = deadline => {
            tracing::warn!(grace_seconds = grace.as_secs(), "calls still in flight after the grace period; exiting without them");
            Ok(())
        }
    }
}

/// SIGTERM and SIGINT.
pub(crate) struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    pub(crate) fn new() -> Result<Self> {
        let install = |kind| signal(kind).map_err(|e| Error::io("installing signal handlers", e));
        Ok(Self {
            term: install(SignalKind::terminate())?,
            int: install(SignalKind::interrupt())?,
        })
    }

    /// Waits for the first of them and names it.
    pub(crate) async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
