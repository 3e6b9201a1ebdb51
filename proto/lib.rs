//! berth's own protobuf messages, generated from `proto/*.proto` by the root `build.rs`.
//!
//! - [`supervisor`]: what the agent and a pod's supervisor (`berth shim`) say to each
//!   other over the supervisor's unix socket; see `proto/supervisor.proto` for the framing.
//! - [`delegate`]: the gRPC service a node agent uses to run pods on a delegate berth.

#![warn(missing_docs)]

/// The agent ↔ per-pod supervisor protocol (`berth.supervisor.v1`).
pub mod supervisor {
    #![allow(missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/berth.supervisor.v1.rs"));
}

/// The node agent ↔ delegate service (`berth.delegate.v1`): the `Runtime` trait over
/// gRPC; see `proto/delegate.proto`.
pub mod delegate {
    #![allow(missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/berth.delegate.v1.rs"));
}
