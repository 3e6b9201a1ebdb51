//! berth's runtime layer: the [`Runtime`] trait every backend implements, the
//! [`ContainerId`] identity, the [`CompositeRuntime`] that routes pods to backends,
//! and the plain values they exchange. No protobuf types cross into this crate; the
//! agent turns CRI requests into these values first.

#![warn(missing_docs)]

pub mod composite;
pub mod containerd;
pub mod delegate;
pub mod error;
pub mod id;
pub mod image;
pub mod metrics;
#[cfg(any(test, feature = "mock"))]
pub mod mock;
pub mod network;
pub mod runtime;
pub mod supervisor;
pub mod trace_context;
pub mod types;
pub mod youki;

pub use composite::CompositeRuntime;
pub use error::{Error, Result};
pub use id::ContainerId;
pub use runtime::Runtime;
