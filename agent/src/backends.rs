//! Builds the runtime berth serves: the one place that knows which backends exist.

use std::sync::Arc;

use runtimes::containerd::{ContainerdConfig, ContainerdRuntime};
use runtimes::delegate::{DelegateConfig, DelegateRuntime, DelegateTls};
use runtimes::image::ImageStore;
use runtimes::network::Network;
use runtimes::youki::{YoukiConfig, YoukiRuntime};
use runtimes::{CompositeRuntime, Runtime};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::store::Store;

/// What the CRI services run on.
pub struct Backends {
    /// The runtime every CRI call goes to: a `CompositeRuntime` over the backends
    /// (the composite itself, so the services can ask where an object was dispatched).
    pub runtime: Arc<CompositeRuntime>,
    /// Pod networking, shared with the youki backend; `Status` reports its readiness.
    pub network: Arc<Network>,
    /// The embedded youki backend alone: what `berth delegate` serves.
    pub local: Arc<dyn Runtime>,
}

/// Builds the backends from the config, behind a `CompositeRuntime` handed the routes
/// `store` records (each pod's backend, on its record). The youki backend reconnects
/// to the pods' supervisors that outlived a previous berth, and cleans up what a crash
/// left half-made.
pub async fn build(config: &Config, store: &Store) -> Result<Backends> {
    let images = ImageStore::open(&config.state_dir.join("images"), config.registries.clone())?;
    let network = Arc::new(Network::new(config.network.clone(), &config.run_dir)?);
    // Each pod's supervisor is this binary, run as `berth shim`.
    let shim = std::env::current_exe()
        .map_err(|e| Error::io("finding berth's own binary (the pods' supervisor)", e))?;
    let images = Arc::new(images);
    let youki_config = YoukiConfig {
        state_dir: config.state_dir.clone(),
        run_dir: config.run_dir.clone(),
        shim: shim.clone(),
        network: network.clone(),
        cgroup_parent: config.cgroup_parent.clone(),
    };
    let youki = YoukiRuntime::open(images.clone(), youki_config.clone()).await?;
    let primary: Arc<dyn Runtime> = Arc::new(youki);
    let mut composite = CompositeRuntime::new(primary.clone());
    // The default handler "" is youki's; its name lets a RuntimeClass ask for youki.
    if !config.backends.youki.handler.is_empty() {
        composite = composite.with_handler(config.backends.youki.handler.clone(), primary.clone());
    }
    if let Some(c) = &config.backends.containerd {
        // Its pods are made as youki's, recorded apart (their own directories), so
        // each backend recovers only its own after a restart.
        let pods = YoukiConfig {
            state_dir: config.state_dir.join("containerd"),
            run_dir: config.run_dir.join("ctrd"),
            ..youki_config
        };
        let containerd = ContainerdRuntime::open(
            images,
            pods,
            ContainerdConfig {
                address: c.address.clone(),
                namespace: c.namespace.clone(),
                runtime: c.runtime.clone(),
                runc: c.runc.clone(),
            },
            shim,
        )
        .await?;
        if let Err(e) = containerd.check().await {
            tracing::warn!(error = %e, handler = %c.handler, "containerd is not reachable yet; its handler is not ready");
        }
        composite = composite.with_handler(c.handler.clone(), Arc::new(containerd));
    }
    if let Some(d) = &config.backends.delegate {
        let delegate = Arc::new(DelegateRuntime::open(DelegateConfig {
            address: d.address.clone(),
            os: d.os.clone(),
            tls: d.tls.as_ref().map(|t| DelegateTls {
                ca: t.ca.clone(),
                cert: t.cert.clone(),
                key: t.key.clone(),
                server_name: t.server_name.clone(),
            }),
            node: config.node_id.clone(),
        })?);
        if let Err(e) = delegate.ready().await {
            tracing::warn!(error = %e, handler = %d.handler, "the delegate is not reachable yet; its handler is not ready");
        }
        // Both: the handler routes pods that name it; as the delegate it also takes
        // pods whose OS only it runs.
        composite = composite
            .with_delegate(delegate.clone())
            .with_handler(d.handler.clone(), delegate);
    }
    let composite = composite.with_routes(store.routes()?);
    Ok(Backends {
        runtime: Arc::new(composite),
        network,
        local: primary,
    })
}
