//! Pod user namespaces. A pod with `userns_options` mode `POD` gets a user namespace of
//! its own, mapped as asked, and its network, IPC and UTS namespaces are created
//! *inside* it, so they are owned by it: a container that joins the user namespace is
//! then privileged over them (it may mount sysfs and mqueue, set its hostname), and
//! nothing of the host is.
//!
//! `unshare(CLONE_NEWUSER)` is refused to a multi-threaded process, so a short-lived
//! child does it: the agent forks, the child (single-threaded by construction) unshares
//! the user namespace, the agent writes its uid and gid maps (as root of the parent
//! namespace it needs no helper and need not deny `setgroups`), the child unshares the
//! other namespaces from inside it, the agent bind-mounts the child's `/proc/<pid>/ns/*`
//! onto the pins, and the child exits when the agent closes the pipe. Between fork and
//! exit the child calls only async-signal-safe functions (a forked copy of a
//! multi-threaded process may not even allocate).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe2, ForkResult, Pid};

use super::ns::{bind_ns, is_ns_mount, NsKind, Pins};
use crate::error::{Error, Result};
use crate::types::IdMapping;

/// A `uid_map`/`gid_map` text: one `<inside> <outside> <count>` line per range.
pub(crate) fn map_text(mappings: &[IdMapping]) -> String {
    mappings
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id, m.host_id, m.length))
        .collect()
}

/// Runs `f(pid)` while the child `pid` sits in a new user namespace mapped with `uids`
/// and `gids`, and in the new namespaces `inner` made inside it; the child is gone when
/// this returns. Blocking (a fork and a few writes, about a millisecond).
pub(crate) fn with_userns<T>(
    uids: &[IdMapping],
    gids: &[IdMapping],
    inner: CloneFlags,
    f: impl FnOnce(Pid) -> Result<T>,
) -> Result<T> {
    if uids.is_empty() || gids.is_empty() {
        return Err(Error::InvalidSpec(
            "a user namespace needs a uid and a gid mapping".into(),
        ));
    }
    let (uid_map, gid_map) = (map_text(uids), map_text(gids));
    let fail = |what: &str, e: std::io::Error| Error::io(format!("pod user namespace: {what}"), e);
    let (from_child, child_tx) = pipe2(OFlag::O_CLOEXEC).map_err(|e| fail("pipe", e.into()))?;
    let (child_rx, to_child) = pipe2(OFlag::O_CLOEXEC).map_err(|e| fail("pipe", e.into()))?;
    // SAFETY: the child runs only `child_main`, which makes async-signal-safe calls
    // and never returns.
    let pid = match unsafe { fork() }.map_err(|e| fail("fork", e.into()))? {
        ForkResult::Child => child_main(
            child_rx.as_raw_fd(),
            child_tx.as_raw_fd(),
            [from_child.as_raw_fd(), to_child.as_raw_fd()],
            inner,
        ),
        ForkResult::Parent { child } => child,
    };
    drop((child_rx, child_tx));
    let mut from_child = File::from(from_child);
    let mut to_child = File::from(to_child);
    let result = (|| {
        step(&mut from_child).map_err(|e| fail("unshare(CLONE_NEWUSER)", e))?;
        std::fs::write(format!("/proc/{pid}/uid_map"), &uid_map)
            .map_err(|e| fail(&format!("writing uid_map {uid_map:?}"), e))?;
        std::fs::write(format!("/proc/{pid}/gid_map"), &gid_map)
            .map_err(|e| fail(&format!("writing gid_map {gid_map:?}"), e))?;
        to_child
            .write_all(&[1])
            .map_err(|e| fail("waking the child", e))?;
        step(&mut from_child).map_err(|e| fail(&format!("unshare({inner:?})"), e))?;
        f(pid)
    })();
    // EOF on its pipe ends the child; a child stuck anywhere else is killed.
    drop(to_child);
    if result.is_err() {
        let _ = kill(pid, Signal::SIGKILL);
    }
    let _ = waitpid(pid, None);
    result
}

/// Reads the child's report of one step: 0, or the errno it failed with (EOF: it died).
fn step(from_child: &mut File) -> std::io::Result<()> {
    let mut code = [0u8; 4];
    from_child.read_exact(&mut code)?;
    match i32::from_ne_bytes(code) {
        0 => Ok(()),
        errno => Err(std::io::Error::from_raw_os_error(errno)),
    }
}

/// The forked child. Only raw syscalls: no allocation, no locks, no Rust I/O.
/// `agent_ends` are the agent's ends of the pipes, which the child closes: holding the
/// write end of its own input, it would never see the agent close it.
fn child_main(rx: RawFd, tx: RawFd, agent_ends: [RawFd; 2], inner: CloneFlags) -> ! {
    // SAFETY: plain syscalls on our own descriptors and process; `_exit` never returns.
    unsafe {
        for fd in agent_ends {
            libc::close(fd);
        }
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        let report = |code: i32| {
            let bytes = code.to_ne_bytes();
            libc::write(tx, bytes.as_ptr().cast(), bytes.len());
        };
        let errno = || *libc::__errno_location();
        if libc::unshare(libc::CLONE_NEWUSER) != 0 {
            report(errno());
            libc::_exit(1);
        }
        report(0);
        let mut byte = 0u8;
        if libc::read(rx, (&mut byte as *mut u8).cast(), 1) != 1 {
            libc::_exit(1);
        }
        if !inner.is_empty() && libc::unshare(inner.bits()) != 0 {
            report(errno());
            libc::_exit(1);
        }
        report(0);
        // Stay until the agent has pinned what it needs and closed the pipe.
        while libc::read(rx, (&mut byte as *mut u8).cast(), 1) > 0 {}
        libc::_exit(0)
    }
}

impl Pins {
    /// Pins a new user namespace for `key`, mapped with `uids` and `gids`, and the new
    /// namespaces `inner` made inside it (so owned by it). Returns the user namespace's
    /// pin; when every pin exists already, returns it as is. A failure leaves no pin.
    pub(crate) fn pin_in_userns(
        &self,
        key: &str,
        uids: &[IdMapping],
        gids: &[IdMapping],
        inner: &[NsKind],
    ) -> Result<PathBuf> {
        if inner.contains(&NsKind::User) {
            return Err(Error::backend("netns", "a user namespace inside itself"));
        }
        let kinds: Vec<NsKind> = std::iter::once(NsKind::User)
            .chain(inner.iter().copied())
            .collect();
        let mut shared = self.lock()?;
        let mut mounted = 0;
        for kind in &kinds {
            mounted += usize::from(is_ns_mount(&self.path(*kind, key))?);
        }
        if mounted == kinds.len() {
            return Ok(self.path(NsKind::User, key));
        }
        // A partial set (a crash half way) belongs to no usable namespace: start over.
        self.clear(&kinds, key)?;
        let flags = inner
            .iter()
            .fold(CloneFlags::empty(), |all, kind| all | kind.flag());
        let made = kinds
            .iter()
            .map(|kind| Ok((*kind, self.pin_file(&mut shared, *kind, key)?)))
            .collect::<Result<Vec<_>>>()
            .and_then(|pins| {
                with_userns(uids, gids, flags, |pid| {
                    pins.iter().try_for_each(|(kind, pin)| {
                        bind_ns(&format!("/proc/{pid}/ns/{}", kind.proc_name()), pin)
                    })
                })
            });
        match made {
            Ok(()) => Ok(self.path(NsKind::User, key)),
            Err(e) => {
                if let Err(cleanup) = self.clear(&kinds, key) {
                    tracing::warn!(key, error = %cleanup, "removing the pins of a failed user namespace");
                }
                Err(e)
            }
        }
    }

    /// Unpins every kind of `kinds` for `key` (the pin lock held).
    fn clear(&self, kinds: &[NsKind], key: &str) -> Result<()> {
        kinds
            .iter()
            .try_for_each(|kind| self.unpin_locked(*kind, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_are_written_inside_outside_count() {
        assert_eq!(
            map_text(&[IdMapping::new(0, 100000, 65536)]),
            "0 100000 65536\n"
        );
        assert_eq!(
            map_text(&[IdMapping::new(0, 1000, 1), IdMapping::new(1, 200000, 10)]),
            "0 1000 1\n1 200000 10\n"
        );
    }

    #[test]
    fn a_child_sits_in_a_mapped_user_namespace_owning_the_inner_ones() {
        berth_testkit::require::root(
            "writing the new namespace's maps needs CAP_SETUID/CAP_SETGID",
        );
        let maps = [IdMapping::new(0, 1000, 100000)];
        let seen = with_userns(&maps, &maps, CloneFlags::CLONE_NEWUTS, |pid| {
            let read = |f: &str| std::fs::read_to_string(format!("/proc/{pid}/{f}")).unwrap();
            let link = |n: &str| std::fs::read_link(format!("/proc/{pid}/ns/{n}")).unwrap();
            Ok((
                read("uid_map"),
                read("gid_map"),
                link("user") != std::fs::read_link("/proc/self/ns/user").unwrap(),
                link("uts") != std::fs::read_link("/proc/self/ns/uts").unwrap(),
                link("net") == std::fs::read_link("/proc/self/ns/net").unwrap(),
            ))
        })
        .unwrap();
        let squeeze = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        assert_eq!(squeeze(&seen.0), "0 1000 100000");
        assert_eq!(squeeze(&seen.1), "0 1000 100000");
        assert!(seen.2 && seen.3 && seen.4, "{seen:?}");
    }

    #[test]
    fn a_failing_step_is_reported_and_the_child_is_gone() {
        berth_testkit::require::root("a user namespace with maps needs CAP_SETUID/CAP_SETGID");
        // Two ranges that overlap inside: the kernel refuses the uid_map write.
        let bad = [IdMapping::new(0, 1000, 10), IdMapping::new(5, 5000, 10)];
        let mut child = None;
        let err = with_userns(&bad, &bad, CloneFlags::empty(), |pid| {
            child = Some(pid);
            Ok(())
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("uid_map"), "{err}");
        assert!(child.is_none(), "f runs only once the namespaces exist");
    }
}
