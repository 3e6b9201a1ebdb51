//! Seccomp filters: berth's RuntimeDefault profile for a capability set (from the tables
//! in `seccomp_data.rs`), and Localhost profiles read from the node (OCI JSON format, as
//! containerd reads them).

use std::path::Path;

use oci_spec::runtime::{
    Arch, Capabilities, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder,
    LinuxSeccompBuilder, LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};

use super::host::HostLookup;
use super::invalid;
use super::seccomp_data::{
    ALLOWED, ARCH_ALLOWED, BY_CAPABILITY, CLONE_NAMESPACE_FLAGS, PERSONALITIES,
};

/// The RuntimeDefault filter for a container whose bounding set is `bounding`:
/// everything outside the allow rules fails with EPERM; without CAP_SYS_ADMIN, `clone`
/// may not create namespaces and `clone3` (whose flags seccomp cannot read) fails with
/// ENOSYS so libc falls back to `clone`.
pub(super) fn runtime_default(bounding: &Capabilities) -> runtimes::Result<LinuxSeccomp> {
    let mut rules = vec![allow(ALLOWED.iter().copied())?];
    for &value in PERSONALITIES {
        rules.push(allow_if_arg(
            "personality",
            0,
            value,
            None,
            LinuxSeccompOperator::ScmpCmpEq,
        )?);
    }
    if !ARCH_ALLOWED.is_empty() {
        rules.push(allow(ARCH_ALLOWED.iter().copied())?);
    }
    for (cap, names) in BY_CAPABILITY {
        if bounding.contains(cap) {
            rules.push(allow(names.iter().copied())?);
        }
    }
    if !bounding.contains(&oci_spec::runtime::Capability::SysAdmin) {
        // s390 passes clone's flags second.
        let index = if cfg!(target_arch = "s390x") { 1 } else { 0 };
        rules.push(allow_if_arg(
            "clone",
            index,
            CLONE_NAMESPACE_FLAGS,
            Some(0),
            LinuxSeccompOperator::ScmpCmpMaskedEq,
        )?);
        rules.push(
            LinuxSyscallBuilder::default()
                .names(vec!["clone3".to_string()])
                .action(LinuxSeccompAction::ScmpActErrno)
                .errno_ret(nix::libc::ENOSYS as u32)
                .build()
                .map_err(built)?,
        );
    }
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(nix::libc::EPERM as u32)
        .architectures(architectures())
        .syscalls(rules)
        .build()
        .map_err(built)
}

/// A Localhost profile: the OCI `LinuxSeccomp` JSON at `path` (`field` names the
/// request field in errors).
pub(super) fn localhost(
    field: &str,
    path: &Path,
    lookup: &dyn HostLookup,
) -> runtimes::Result<LinuxSeccomp> {
    let text = lookup.seccomp_profile(path).map_err(|e| {
        invalid(
            field,
            format!("cannot read seccomp profile {}: {e}", path.display()),
        )
    })?;
    serde_json::from_str(&text).map_err(|e| {
        invalid(
            field,
            format!(
                "seccomp profile {} is not valid OCI seccomp JSON: {e}",
                path.display()
            ),
        )
    })
}

/// The native architecture and its compat ABIs (what a process here can call in).
fn architectures() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchArm, Arch::ScmpArchAarch64]
    } else if cfg!(target_arch = "riscv64") {
        vec![Arch::ScmpArchRiscv64]
    } else if cfg!(target_arch = "s390x") {
        vec![Arch::ScmpArchS390, Arch::ScmpArchS390x]
    } else {
        Vec::new()
    }
}

fn allow<'a>(names: impl Iterator<Item = &'a str>) -> runtimes::Result<LinuxSyscall> {
    LinuxSyscallBuilder::default()
        .names(names.map(str::to_string).collect::<Vec<_>>())
        .action(LinuxSeccompAction::ScmpActAllow)
        .build()
        .map_err(built)
}

fn allow_if_arg(
    name: &str,
    index: usize,
    value: u64,
    value_two: Option<u64>,
    op: LinuxSeccompOperator,
) -> runtimes::Result<LinuxSyscall> {
    let mut arg = LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op);
    if let Some(two) = value_two {
        arg = arg.value_two(two);
    }
    let arg = arg.build().map_err(built)?;
    LinuxSyscallBuilder::default()
        .names(vec![name.to_string()])
        .action(LinuxSeccompAction::ScmpActAllow)
        .args(vec![arg])
        .build()
        .map_err(built)
}

/// A builder error here is a bug in this module, not in the request.
fn built(e: oci_spec::OciSpecError) -> runtimes::Error {
    runtimes::Error::internal("spec", "building the seccomp profile", e)
}
