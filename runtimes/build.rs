//! Builds `podinit/podinit.rs`, PID 1 of a pod's shared PID namespace, as a
//! freestanding static executable (no libc, ~1 KB) for the crate's target; the
//! supervisor embeds it and execs it from a sealed memfd (see
//! `src/supervisor/holder.rs`).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "podinit/podinit.rs";
    println!("cargo:rerun-if-changed={source}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("pod-init");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = std::env::var("TARGET").expect("TARGET");
    let mut command = Command::new(rustc);
    command.args([
        "--edition=2021",
        "--crate-type=bin",
        "--crate-name=pod_init",
        "--target",
        &target,
        "-Copt-level=s",
        "-Cpanic=abort",
        "-Cdebuginfo=0",
        "-Crelocation-model=static",
        "-Cstrip=symbols",
        // Freestanding: the program brings its own `_start` and makes raw syscalls.
        "-Clink-arg=-nostartfiles",
        "-Clink-arg=-nostdlib",
        "-Clink-arg=-static",
        "-Clink-arg=-Wl,--gc-sections",
        "-Clink-arg=-Wl,--build-id=none",
    ]);
    if let Some(linker) = std::env::var_os("RUSTC_LINKER") {
        let mut arg = std::ffi::OsString::from("-Clinker=");
        arg.push(linker);
        command.arg(arg);
    }
    command.arg("-o").arg(&out).arg(source);
    let status = command.status().expect("running rustc for the pod init");
    assert!(status.success(), "building {source} failed: {status}");
}
