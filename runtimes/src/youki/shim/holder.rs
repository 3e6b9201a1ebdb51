//! The PID-namespace holder of a pod with a pod-level PID namespace: a tiny process
//! forked into a new PID namespace whose PID 1 it is. Containers join it through
//! `/proc/<holder>/ns/pid_for_children`, so no container's app is PID 1 (what critest
//! checks), and the namespace lives as long as the pod rather than as long as one
//! container.
//!
//! In a pod with a user namespace the PID namespace must be owned by it (its root
//! mounts `/proc` for it, and may join it at all only then), but a PID namespace is
//! owned by its creator's user namespace and the supervisor must stay in the node's.
//! So the supervisor's child enters the pod's user namespace, unshares a PID namespace
//! for its children and forks PID 1 of it; that child is the holder the supervisor
//! knows (its `pid_for_children` is the pod's namespace once PID 1 exists: the kernel
//! shows none before), and it exits when PID 1 does.

use std::path::Path;

use nix::sched::CloneFlags;
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::unistd::Pid;

/// Stack of the cloned child; it only runs [`hold`] or [`hold_in_userns`].
const STACK: usize = 64 * 1024;

/// Forks the holder and returns its host pid (a child of the caller). With `userns`
/// (the pod's user namespace pin) the PID namespace is owned by that user namespace.
pub fn spawn(userns: Option<&Path>) -> std::io::Result<Pid> {
    let mut stack = vec![0u8; STACK];
    let (flags, body): (CloneFlags, Box<dyn FnMut() -> isize>) = match userns {
        None => (CloneFlags::CLONE_NEWPID, Box::new(hold)),
        Some(pin) => {
            let ns = std::fs::File::open(pin).map_err(|e| {
                std::io::Error::new(e.kind(), format!("opening {}: {e}", pin.display()))
            })?;
            (
                CloneFlags::empty(),
                Box::new(move || hold_in_userns(std::os::fd::AsRawFd::as_raw_fd(&ns))),
            )
        }
    };
    // SAFETY: the caller is single-threaded; the child runs only `hold` or
    // `hold_in_userns`, which use async-signal-safe calls and never return.
    let pid = unsafe { nix::sched::clone(body, &mut stack, flags, Some(libc::SIGCHLD)) }
        .map_err(std::io::Error::from)?;
    Ok(pid)
}

/// The holder of a pod with a user namespace: enters it (`userns` is the pin's
/// descriptor), unshares a PID namespace, forks its PID 1 ([`hold`]) and lives as long
/// as that does. Dies with the supervisor (PDEATHSIG), and PID 1 with it.
fn hold_in_userns(userns: libc::c_int) -> isize {
    // SAFETY: plain syscalls on our own process; every path ends in `_exit`.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::setns(userns, libc::CLONE_NEWUSER) != 0 || libc::unshare(libc::CLONE_NEWPID) != 0 {
            libc::_exit(1);
        }
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
            let _ = signal(s, SigHandler::SigIgn);
        }
        let init = libc::fork();
        if init == 0 {
            hold();
        }
        if init < 0 {
            libc::_exit(1);
        }
        let mut status = 0;
        while libc::waitpid(init, &mut status, 0) < 0 && *libc::__errno_location() == libc::EINTR {}
        libc::_exit(0)
    }
}

/// PID 1 of the pod's namespace: sleeps; orphans of the namespace are reparented here
/// and, with SIGCHLD ignored, reaped by the kernel.
fn hold() -> isize {
    // SAFETY: all plain syscalls on our own process. Inherited descriptors (the
    // supervisor's socket) are closed so a dead supervisor's socket cannot linger
    // here; PDEATHSIG ends the namespace, and with it every process in it, when the
    // supervisor (or the holder in a user namespace) dies.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        let _ = signal(Signal::SIGCHLD, SigHandler::SigIgn);
        for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
            let _ = signal(s, SigHandler::SigIgn);
        }
        loop {
            libc::pause();
        }
    }
}
