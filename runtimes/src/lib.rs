//! berth's runtime layer: the [`Runtime`] trait every backend implements, the
//! [`ContainerId`] identity, and the plain values they exchange. No protobuf types
//! cross into this crate; the agent turns CRI requests into these values first.

pub mod error;
pub mod id;
pub mod image;
pub mod runtime;
pub mod types;
pub mod youki;

pub use error::{Error, Result};
pub use id::ContainerId;
pub use runtime::Runtime;
