//! Plain values the [`Runtime`](crate::Runtime) trait speaks: no protobuf types here.

mod image;
mod pod;

pub use image::{FsUsage, ImageConfig, ImageInfo, PullRequest, RegistryAuth};
pub use pod::{ContainerSpec, SandboxSpec};
