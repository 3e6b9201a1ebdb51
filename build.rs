//! Compiles `proto/*.proto` into Rust (prost). The supervisor protocol is messages
//! only (plain length-prefixed frames over a unix socket); the delegate protocol is a
//! gRPC service, so tonic generates its client and server too. The CRI services
//! berth serves come from `k8s-cri`.

use std::io;

fn main() -> io::Result<()> {
    println!("cargo:rerun-if-changed=proto");
    prost_build::compile_protos(&["proto/supervisor.proto"], &["proto"])?;
    tonic_prost_build::configure().compile_protos(&["proto/delegate.proto"], &["proto"])
}
