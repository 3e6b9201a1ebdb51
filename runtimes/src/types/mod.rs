//! Plain values the [`Runtime`](crate::Runtime) trait speaks: no protobuf types here.

mod container;
mod features;
mod image;
mod pod;
mod stream;

pub use container::{
    ContainerSpec, ContainerState, ContainerStats, ContainerStatus, ExecOutput, ExecRequest,
    ImageVolume, Inspection, MemoryStats, ResolvedUser, SupplementalGroupsPolicy, UsageDetail,
    UserRequest,
};
pub use features::Features;
pub use image::{FsUsage, ImageConfig, ImageInfo, PullRequest, RegistryAuth};
pub use pod::{
    DnsConfig, IdMapping, NamespaceMode, NamespaceOptions, NetworkStats, PortMapping, Protocol,
    SandboxSpec, SandboxState, SandboxStats, SandboxStatus, UserNamespace,
};
pub use stream::{
    AttachRequest, Duplex, ExecStreamRequest, PortStream, StdioRequest, StreamReader,
    StreamSession, StreamWriter, TerminalSize,
};
