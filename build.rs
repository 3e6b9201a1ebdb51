//! Compiles `proto/*.proto` into Rust (prost). The supervisor protocol is messages
//! only (plain length-prefixed frames over a unix socket), as are NRI's and ttrpc's
//! (berth's agent frames them itself); the delegate protocol is a
//! gRPC service, so tonic generates its client and server too, as for the CRI
//! services berth serves (`proto/cri.proto`). CRI messages also derive serde: the
//! state store keeps pod and container configs as JSON.

use std::io;

fn main() -> io::Result<()> {
    println!("cargo:rerun-if-changed=proto");
    // NRI's messages over ttrpc: berth frames and dispatches them itself (agent/src/nri),
    // so prost's messages are all it needs.
    prost_build::compile_protos(
        &[
            "proto/supervisor.proto",
            "proto/nri.proto",
            "proto/ttrpc.proto",
        ],
        &["proto"],
    )?;
    tonic_prost_build::configure()
        .type_attribute(
            ".runtime.v1",
            "#[derive(serde::Serialize, serde::Deserialize)]",
        )
        // Kubernetes 1.37 made an env value bytes; records stored before keep it as
        // a JSON string, which must still load.
        .field_attribute(
            ".runtime.v1.KeyValue.value",
            "#[serde(with = \"crate::text_or_bytes\")]",
        )
        .compile_protos(&["proto/cri.proto"], &["proto"])?;
    tonic_prost_build::configure().compile_protos(&["proto/delegate.proto"], &["proto"])
}
