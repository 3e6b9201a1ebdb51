//! Builds the runtime berth serves: the one place that knows which backends exist.

use std::sync::Arc;

use runtimes::image::ImageStore;
use runtimes::network::Network;
use runtimes::youki::YoukiRuntime;
use runtimes::{CompositeRuntime, Runtime};

use crate::config::Config;
use crate::error::Result;
use crate::store::Store;

/// What the CRI services run on.
pub struct Backends {
    /// The runtime every CRI call goes to: a `CompositeRuntime` over the backends
    /// (the composite itself, so the services can ask where an object was dispatched).
    pub runtime: Arc<CompositeRuntime>,
    /// Pod networking, shared with the youki backend; `Status` reports its readiness.
    pub network: Arc<Network>,
}

/// Builds the backends from the config, behind a `CompositeRuntime` whose dispatch
/// records live in `store`.
pub fn build(config: &Config, store: Arc<Store>) -> Result<Backends> {
    let images = ImageStore::open(&config.state_dir.join("images"), config.registries.clone())?;
    let network = Arc::new(Network::new(config.network.clone(), &config.run_dir)?);
    let primary: Arc<dyn Runtime> = Arc::new(YoukiRuntime::new(Arc::new(images)));
    let composite = CompositeRuntime::new(primary, store)?;
    Ok(Backends {
        runtime: Arc::new(composite),
        network,
    })
}
