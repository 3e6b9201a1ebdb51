//! The streaming server driven by the real crictl, over SPDY and over WebSocket:
//! berth's `StreamingServer` runs sessions on a local-process runtime, a CRI stub
//! hands crictl the server's URLs, and crictl execs, attaches and forwards ports
//! as it would against kubelet's streaming server.

mod attach;
mod cri_stub;
mod exec;
mod harness;
mod http;
mod leaks;
mod local_runtime;
mod port_forward;
mod record;
mod tty;
mod ws_port_forward;

pub use harness::*;
