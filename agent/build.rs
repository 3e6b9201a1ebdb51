//! Links the `berth` binary as a position-dependent executable.
//!
//! Every pod's supervisor is this binary re-executed (`berth shim`). In a PIE the
//! dynamic loader writes the load address into every pointer of `.data.rel.ro` and
//! the GOT at start-up (~56,000 relative relocations, ~1 MB of pages), so each
//! process holds that megabyte as private dirty memory: it was most of a
//! supervisor's footprint (1.27 of 1.68 MB PSS) and a megabyte of the agent's.
//! Linked at a fixed address there is nothing to relocate, and those pages stay
//! clean page-cache pages shared by the agent and every supervisor. The code is
//! still compiled position-independent; only the executable's own address is no
//! longer randomized (the stack, heap, mmaps and shared libraries still are), the
//! way containerd, its shims and runc are built too (Go links non-PIE executables).
fn main() {
    // The target's OS (a build script's own `cfg` is the host's).
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
