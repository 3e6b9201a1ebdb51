//! The PID-namespace holder of a pod with a pod-level PID namespace: PID 1 of a new PID
//! namespace. Containers join it through `/proc/<holder>/ns/pid_for_children`, so no
//! container's app is PID 1 (what critest checks), and the namespace lives as long as
//! the pod rather than as long as one container.
//!
//! Every container of the pod can name PID 1, and one with `CAP_SYS_PTRACE` can open
//! its `/proc/1/{root,cwd,exe,fd,map_files}`, join `/proc/1/ns/*` or trace it. So PID 1
//! must hold nothing of the host (a clone of the supervisor would hold the host's `/`,
//! every capability, the supervisor's descriptors and berth's binary). The cloned child
//! therefore locks itself down ([`lock_down_and_exec`]): every descriptor close-on-exec;
//! fresh mount, network, IPC, UTS and cgroup namespaces; an empty read-only tmpfs as
//! `/` (pivot_root, the old root detached); no capability in any set, locked
//! securebits, no_new_privs, not dumpable; then it execs berth's pod init
//! (`runtimes/podinit/podinit.rs`, a ~1 KB freestanding program embedded at build
//! time) from a sealed memfd. That is runc's answer to CVE-2019-5736 (never let a
//! container reach a host binary through `/proc/<pid>/exe`; runc-dmz is likewise a
//! tiny static helper copied to a memfd) and the shape of containerd's pause and
//! catatonit, without an image: `/proc/1/exe` is the sealed memfd, `cmdline` is
//! `pod-init`, the environment is empty, and the CoW copy of the supervisor is gone
//! (PID 1 keeps a few pages; the memfd a page or two). Its uid stays 0 (with no capability): a
//! setuid would clear PDEATHSIG, which ends the namespace with the supervisor.
//!
//! In a pod with a user namespace the PID namespace must be owned by it (its root
//! mounts `/proc` for it, and may join it at all only then), but a PID namespace is
//! owned by its creator's user namespace and the supervisor must stay in the node's.
//! So the supervisor's child enters the pod's user namespace, unshares a PID namespace
//! for its children and forks PID 1 of it; that child is the holder the supervisor
//! knows (its `pid_for_children` is the pod's namespace once PID 1 exists: the kernel
//! shows none before), and it exits when PID 1 does. Both lock down and exec the pod
//! init, which waits for its child when it is not PID 1.

use std::ffi::CStr;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

/// The pod init, built by `build.rs` from `runtimes/podinit/podinit.rs`.
static POD_INIT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pod-init"));

/// Stack of the cloned child; it only runs [`lock_down_and_exec`] or [`hold_in_userns`].
const STACK: usize = 64 * 1024;

/// What the child was doing when it failed, by the number it reports.
const STEPS: &[&str] = &[
    "entering the pod's user namespace",
    "becoming the pod's root",
    "unsharing the PID namespace",
    "forking PID 1",
    "marking descriptors close-on-exec",
    "creating the pod init's memfd",
    "writing the pod init",
    "sealing the pod init",
    "unsharing mount, network, IPC, UTS and cgroup namespaces",
    "making mounts private",
    "mounting the empty root",
    "entering the empty root",
    "pivot_root",
    "detaching the host's root",
    "locking securebits",
    "clearing ambient capabilities",
    "dropping capabilities",
    "setting no_new_privs",
    "executing the pod init",
];

/// Forks the holder and returns its host pid (a child of the caller) once it runs the
/// pod init. With `userns` (the pod's user namespace pin) the PID namespace is owned
/// by that user namespace.
pub fn spawn(userns: Option<&Path>) -> std::io::Result<Pid> {
    let mut stack = vec![0u8; STACK];
    // The child reports a failed step here; a successful exec closes it (CLOEXEC).
    let (report_r, report_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let report = report_w.as_raw_fd();
    let supervisor = std::process::id() as libc::pid_t;
    let (flags, body): (CloneFlags, Box<dyn FnMut() -> isize>) = match userns {
        None => (
            CloneFlags::CLONE_NEWPID,
            Box::new(move || {
                // SAFETY: a plain prctl on our own process.
                unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
                lock_down_and_exec(report)
            }),
        ),
        Some(pin) => {
            let ns = std::fs::File::open(pin).map_err(|e| {
                std::io::Error::new(e.kind(), format!("opening {}: {e}", pin.display()))
            })?;
            (
                CloneFlags::empty(),
                Box::new(move || hold_in_userns(ns.as_raw_fd(), supervisor, report)),
            )
        }
    };
    // SAFETY: the caller is single-threaded; the child runs only `lock_down_and_exec`
    // or `hold_in_userns`, which use raw syscalls only and never return.
    let pid = unsafe { nix::sched::clone(body, &mut stack, flags, Some(libc::SIGCHLD)) }
        .map_err(std::io::Error::from)?;
    drop(report_w);
    match failure(report_r) {
        None => Ok(pid),
        Some(e) => {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, Some(WaitPidFlag::__WALL));
            Err(e)
        }
    }
}

/// What the child reported before its exec (EOF without a word: none).
fn failure(report: OwnedFd) -> Option<std::io::Error> {
    let mut words = Vec::new();
    let _ = std::fs::File::from(report).read_to_end(&mut words);
    let step = u32::from_ne_bytes(words.get(0..4)?.try_into().ok()?) as usize;
    let errno = i32::from_ne_bytes(words.get(4..8)?.try_into().ok()?);
    let what = STEPS.get(step).copied().unwrap_or("an unknown step");
    let e = std::io::Error::from_raw_os_error(errno);
    Some(std::io::Error::new(e.kind(), format!("{what}: {e}")))
}

/// Reports `step` with the current errno on `report` and exits.
///
/// # Safety
/// Only in the cloned child: it ends the process.
unsafe fn fail(report: libc::c_int, step: usize) -> ! {
    let errno = *libc::__errno_location();
    let mut words = [0u8; 8];
    words[..4].copy_from_slice(&(step as u32).to_ne_bytes());
    words[4..].copy_from_slice(&errno.to_ne_bytes());
    libc::write(report, words.as_ptr().cast(), words.len());
    libc::_exit(1)
}

/// Index of `name` in [`STEPS`] (a typo fails the unit test, not a pod).
fn step(name: &str) -> usize {
    STEPS.iter().position(|s| *s == name).unwrap_or(STEPS.len())
}

/// The holder of a pod with a user namespace: enters it (`userns` is the pin's
/// descriptor) as the pod's root (a mapped host id: the supervisor's uid 0 means
/// nothing there, and a holder left as host uid 0 would own what root owns, its
/// keyring for one), unshares a PID namespace, forks its PID 1 and becomes the pod
/// init that waits for it. Dies with the `supervisor` (PDEATHSIG), and PID 1 with it.
fn hold_in_userns(userns: libc::c_int, supervisor: libc::pid_t, report: libc::c_int) -> isize {
    // SAFETY: plain syscalls on our own process; every path ends in exec or `_exit`.
    unsafe {
        if libc::setns(userns, libc::CLONE_NEWUSER) != 0 {
            fail(report, step("entering the pod's user namespace"));
        }
        // Host groups are unmapped there; a pin that denies setgroups keeps them.
        libc::setgroups(0, std::ptr::null());
        if libc::setresgid(0, 0, 0) != 0 || libc::setresuid(0, 0, 0) != 0 {
            fail(report, step("becoming the pod's root"));
        }
        // After the change of uid (which clears it); a supervisor that died before
        // it was set is no longer our parent.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        if libc::getppid() != supervisor {
            libc::_exit(1);
        }
        if libc::unshare(libc::CLONE_NEWPID) != 0 {
            fail(report, step("unsharing the PID namespace"));
        }
        match libc::fork() {
            0 => {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                lock_down_and_exec(report)
            }
            init if init < 0 => fail(report, step("forking PID 1")),
            _ => lock_down_and_exec(report),
        }
    }
}

/// Takes from this process every view of the host and every privilege, then execs the
/// pod init (see the module's doc). Reports the failed step on `report` otherwise.
fn lock_down_and_exec(report: libc::c_int) -> ! {
    const ROOT_OPTIONS: &CStr = c"size=4k,nr_inodes=1,mode=0";
    const NAME: &CStr = c"pod-init";
    // SAFETY: raw syscalls on our own process with valid pointers; the only memory
    // touched is the embedded program and locals. Every path ends in exec or `_exit`.
    unsafe {
        // Close-on-exec rather than closed: `report` must work until the exec.
        if libc::syscall(
            libc::SYS_close_range,
            0u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) != 0
        {
            fail(report, step("marking descriptors close-on-exec"));
        }
        let sealing = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
        // MFD_EXEC says so where vm.memfd_noexec asks; older kernels do not know it.
        let mut memfd = libc::memfd_create(NAME.as_ptr(), sealing | libc::MFD_EXEC);
        if memfd < 0 && *libc::__errno_location() == libc::EINVAL {
            memfd = libc::memfd_create(NAME.as_ptr(), sealing);
        }
        if memfd < 0 {
            fail(report, step("creating the pod init's memfd"));
        }
        let mut written = 0;
        while written < POD_INIT.len() {
            let rest = &POD_INIT[written..];
            let n = libc::write(memfd, rest.as_ptr().cast(), rest.len());
            if n <= 0 {
                fail(report, step("writing the pod init"));
            }
            written += n as usize;
        }
        let seals =
            libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
        if libc::fcntl(memfd, libc::F_ADD_SEALS, seals) != 0 {
            fail(report, step("sealing the pod init"));
        }
        let fresh = libc::CLONE_NEWNS
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWCGROUP;
        if libc::unshare(fresh) != 0 {
            fail(
                report,
                step("unsharing mount, network, IPC, UTS and cgroup namespaces"),
            );
        }
        let none = std::ptr::null::<libc::c_char>();
        if libc::mount(
            none,
            c"/".as_ptr(),
            none,
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            fail(report, step("making mounts private"));
        }
        // Any directory of the (now private) tree serves as the mount point: /proc
        // exists wherever berth runs.
        let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        if libc::mount(
            c"tmpfs".as_ptr(),
            c"/proc".as_ptr(),
            c"tmpfs".as_ptr(),
            flags,
            ROOT_OPTIONS.as_ptr().cast(),
        ) != 0
        {
            fail(report, step("mounting the empty root"));
        }
        if libc::chdir(c"/proc".as_ptr()) != 0 {
            fail(report, step("entering the empty root"));
        }
        // pivot_root(".", "."): the old root ends up stacked on the new one, where it
        // is detached with everything below it.
        let dot = c".".as_ptr();
        if libc::syscall(libc::SYS_pivot_root, dot, dot) != 0 {
            fail(report, step("pivot_root"));
        }
        if libc::umount2(dot, libc::MNT_DETACH) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
            fail(report, step("detaching the host's root"));
        }
        // Root gets no capability from exec, and none can come back.
        const SECUREBITS: libc::c_ulong = 0b1110_1111;
        if libc::prctl(libc::PR_SET_SECUREBITS, SECUREBITS, 0, 0, 0) != 0 {
            fail(report, step("locking securebits"));
        }
        for cap in 0..64 as libc::c_ulong {
            libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0);
        }
        if libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        ) != 0
        {
            fail(report, step("clearing ambient capabilities"));
        }
        let mut header = CapHeader {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let data = [CapData::default(); 2];
        if libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        ) != 0
        {
            fail(report, step("dropping capabilities"));
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            fail(report, step("setting no_new_privs"));
        }
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        let argv = [NAME.as_ptr(), std::ptr::null()];
        let envp = [std::ptr::null::<libc::c_char>()];
        libc::syscall(
            libc::SYS_execveat,
            memfd,
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        );
        fail(report, step("executing the pod init"))
    }
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_named_in_the_child_exists() {
        let source = include_str!("holder.rs");
        for name in source
            .split("step(\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
        {
            assert!(STEPS.contains(&name), "step {name:?} is not in STEPS");
        }
    }

    #[test]
    fn the_pod_init_is_a_small_static_executable() {
        assert_eq!(&POD_INIT[..4], b"\x7fELF");
        assert!(POD_INIT.len() < 16 * 1024, "{} bytes", POD_INIT.len());
    }
}
