//! What the youki backend offers on this host, probed once when it opens.
//!
//! - Recursive read-only bind mounts: libcontainer applies the `rro` option with
//!   `mount_setattr(AT_RECURSIVE)` (Linux 5.12), so they work when the kernel has that
//!   call.
//! - The supplemental groups policy: the backend resolves users itself (`user.rs`:
//!   `Merge` adds the image's groups, `Strict` does not) and records who each
//!   container runs as, which `ContainerStatus.user` reports.
//! - Pod user namespaces: the pod's namespaces are made inside one it pins
//!   (`network::Network::pin_with_userns`), the PID namespace holder too, and the
//!   container rootfs is handed to the mapped ids (`remap.rs`); they work when this
//!   process may make a user namespace at all.

use crate::types::Features;

/// The features of a full youki backend on this host.
pub fn probe() -> Features {
    Features {
        recursive_read_only_mounts: has_mount_setattr(),
        user_namespaces: has_user_namespaces(),
        supplemental_groups_policy: true,
    }
}

/// True when the kernel has `mount_setattr(2)`: a call with no valid argument fails
/// with `ENOSYS` only when the call itself is missing.
pub(crate) fn has_mount_setattr() -> bool {
    // SAFETY: a null attribute pointer with size 0 and an invalid descriptor: the
    // kernel reads nothing and changes nothing.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1,
            c"".as_ptr(),
            0,
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS)
}

/// True when the kernel has user namespaces and allows more than the ones there are
/// (`user.max_user_namespaces` is 0 where they are turned off).
pub(crate) fn has_user_namespaces() -> bool {
    std::path::Path::new("/proc/self/ns/user").exists()
        && std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
            .ok()
            .and_then(|n| n.trim().parse::<u64>().ok())
            .is_some_and(|n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_kernel_has_mount_setattr() {
        // The machines berth is built and tested on run Linux ≥ 5.12.
        assert!(has_mount_setattr());
        assert!(probe().recursive_read_only_mounts);
        assert!(probe().supplemental_groups_policy);
        assert!(probe().user_namespaces, "kernel 6.x has user namespaces");
    }
}
