//! berth's pod init: PID 1 of a pod's shared PID namespace (see
//! `runtimes/src/supervisor/holder.rs`, which locks the process down and execs this
//! from a sealed memfd). A freestanding program with no libc and no allocation, a few
//! KB, so PID 1 maps no host file and costs the pod a few pages.
//!
//! As PID 1 it ignores SIGCHLD, so the kernel reaps every orphan the namespace hands
//! it, installs no handler, so the kernel drops every signal sent from inside the
//! namespace (SIGKILL and SIGSTOP included), and sleeps. Started as any other pid (the
//! holder of a pod with a user namespace, outside the PID namespace it made) it waits
//! until its child, PID 1, is gone and exits.

#![no_std]
#![no_main]

use core::arch::{asm, global_asm};

#[cfg(target_arch = "x86_64")]
mod nr {
    pub const EXIT_GROUP: usize = 231;
    pub const GETPID: usize = 39;
    pub const PPOLL: usize = 271;
    pub const PRCTL: usize = 157;
    pub const RT_SIGACTION: usize = 13;
    pub const WAIT4: usize = 61;
}
#[cfg(target_arch = "aarch64")]
mod nr {
    pub const EXIT_GROUP: usize = 94;
    pub const GETPID: usize = 172;
    pub const PPOLL: usize = 73;
    pub const PRCTL: usize = 167;
    pub const RT_SIGACTION: usize = 134;
    pub const WAIT4: usize = 260;
}

#[cfg(target_arch = "x86_64")]
unsafe fn syscall(n: usize, a: [usize; 4]) -> isize {
    let ret: isize;
    asm!("syscall", inlateout("rax") n as isize => ret, in("rdi") a[0], in("rsi") a[1],
         in("rdx") a[2], in("r10") a[3], lateout("rcx") _, lateout("r11") _,
         options(nostack));
    ret
}

#[cfg(target_arch = "aarch64")]
unsafe fn syscall(n: usize, a: [usize; 4]) -> isize {
    let ret: isize;
    asm!("svc 0", in("x8") n, inlateout("x0") a[0] as isize => ret, in("x1") a[1],
         in("x2") a[2], in("x3") a[3], options(nostack));
    ret
}

// The entry point: the kernel leaves no return address, so call into Rust with an
// aligned stack rather than declaring `_start` a Rust function.
#[cfg(target_arch = "x86_64")]
global_asm!(
    ".globl _start",
    "_start:",
    "xor rbp, rbp",
    "and rsp, -16",
    "call pod_init",
    "ud2"
);
#[cfg(target_arch = "aarch64")]
global_asm!(
    ".globl _start",
    "_start:",
    "mov x29, xzr",
    "mov x30, xzr",
    "bl pod_init",
    "brk #0"
);

const PR_SET_NAME: usize = 15;
const PR_SET_DUMPABLE: usize = 4;
const SIGHUP: usize = 1;
const SIGINT: usize = 2;
const SIGTERM: usize = 15;
const SIGCHLD: usize = 17;
const SIG_IGN: usize = 1;
const WALL: usize = 0x4000_0000;
const ECHILD: isize = 10;

/// The kernel's `struct sigaction` (handler, flags, restorer, mask).
#[repr(C)]
struct SigAction([usize; 4]);

fn exit(code: usize) -> ! {
    loop {
        // SAFETY: exit_group takes an integer and does not return.
        unsafe { syscall(nr::EXIT_GROUP, [code, 0, 0, 0]) };
    }
}

#[no_mangle]
extern "C" fn pod_init() -> ! {
    // SAFETY: plain syscalls on this process with valid pointers.
    unsafe {
        // execve made the process dumpable again: without this a container's root
        // without CAP_SYS_PTRACE could open /proc/1/* (PID 1 has no capability a
        // ptrace check could weigh against it).
        syscall(nr::PRCTL, [PR_SET_DUMPABLE, 0, 0, 0]);
        syscall(
            nr::PRCTL,
            [PR_SET_NAME, b"pod-init\0".as_ptr() as usize, 0, 0],
        );
        let ignore = SigAction([SIG_IGN, 0, 0, 0]);
        for sig in [SIGCHLD, SIGTERM, SIGINT, SIGHUP] {
            syscall(nr::RT_SIGACTION, [sig, &ignore as *const _ as usize, 0, 8]);
        }
        if syscall(nr::GETPID, [0; 4]) == 1 {
            loop {
                // ppoll on nothing, no timeout: sleeps until a signal, and none is
                // ever delivered (all ignored or dropped).
                syscall(nr::PPOLL, [0, 0, 0, 0]);
            }
        }
        // With SIGCHLD ignored, wait4 returns ECHILD once the last child is gone.
        loop {
            if syscall(nr::WAIT4, [usize::MAX, 0, WALL, 0]) == -ECHILD {
                exit(0);
            }
        }
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    exit(127)
}
