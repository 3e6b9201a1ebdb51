//! Compiles `proto/*.proto` into Rust messages (prost). Messages only: the services
//! berth serves over gRPC come from `k8s-cri`; the supervisor protocol is plain
//! length-prefixed messages over a unix socket.

use std::io;
use std::path::PathBuf;

fn main() -> io::Result<()> {
    let mut protos: Vec<PathBuf> = std::fs::read_dir("proto")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    protos.sort();
    println!("cargo:rerun-if-changed=proto");
    prost_build::compile_protos(&protos, &["proto"])
}
