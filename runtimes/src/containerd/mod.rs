//! The containerd backend: pods on the `containerd` runtime handler, run through
//! containerd's own gRPC API (never its CRI plugin).

pub mod connect;
