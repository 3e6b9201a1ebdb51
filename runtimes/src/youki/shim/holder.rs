//! The PID-namespace holder of a pod with a pod-level PID namespace: a tiny process
//! forked into a new PID namespace whose PID 1 it is. Containers join it through
//! `/proc/<holder>/ns/pid`, so no container's app is PID 1 (what critest checks), and
//! the namespace lives as long as the pod rather than as long as one container.

use nix::sched::CloneFlags;
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::unistd::Pid;

/// Stack of the cloned child; it only runs [`hold`].
const STACK: usize = 64 * 1024;

/// Forks the holder and returns its host pid (a child of the caller).
pub fn spawn() -> std::io::Result<Pid> {
    let mut stack = vec![0u8; STACK];
    // SAFETY: the caller is single-threaded; the child runs only `hold`, which uses
    // async-signal-safe calls and never returns.
    let pid = unsafe {
        nix::sched::clone(
            Box::new(hold),
            &mut stack,
            CloneFlags::CLONE_NEWPID,
            Some(libc::SIGCHLD),
        )
    }
    .map_err(std::io::Error::from)?;
    Ok(pid)
}

/// PID 1 of the pod's namespace: sleeps; orphans of the namespace are reparented here
/// and, with SIGCHLD ignored, reaped by the kernel.
fn hold() -> isize {
    // SAFETY: all plain syscalls on our own process. Inherited descriptors (the
    // supervisor's socket) are closed so a dead supervisor's socket cannot linger
    // here; PDEATHSIG ends the namespace, and with it every process in it, when the
    // supervisor dies.
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
