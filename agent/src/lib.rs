//! berth, the Kubernetes CRI v1 node agent: configuration, state store, the CRI gRPC
//! services and the server that runs them. The `berth` binary (`main.rs`) is a thin
//! shell over [`server::serve`].

#![warn(missing_docs)]

pub mod backends;
pub mod config;
pub mod cri;
pub mod delegate;
pub mod doctor;
pub mod error;
pub mod identity;
pub mod memory;
pub mod nri;
pub mod reconcile;
pub mod server;
pub mod spec;
pub mod status;
pub mod store;
pub mod streaming;
pub mod telemetry;

pub use error::{Error, Result};
