//! Whether each pod's supervisor still runs, known without asking it: a pidfd per
//! supervisor, opened when it starts (or when berth reconnects to it), and polled
//! without blocking when someone asks. PodSandboxStatus and ListPodSandbox ask every
//! second (kubelet's PLEG); a `poll(2)` of zero timeout costs about a microsecond where
//! a ping is a socket round trip on the blocking pool, and a supervisor that is alive
//! but busy with a slow create still counts as running.
//!
//! A dead supervisor is not brought back: its containers lost their stdio pipes and
//! their exit statuses, and a shared PID namespace died with its holder. The pod is
//! reported not ready for good, as containerd's CRI plugin does when a sandbox's shim
//! dies (the shim's death is a sandbox exit, which sets the sandbox `NotReady`), so
//! kubelet stops it, removes it and makes a new one.

use std::collections::HashMap;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::unistd::Pid;

use crate::id::ContainerId;

use super::pod::supervisor_pid;

/// What is known of a pod's supervisor.
#[derive(Debug)]
enum Known {
    /// Running when it was last polled: its pidfd.
    Watched(OwnedFd),
    /// It exited (or answered nobody at reconnection): for good.
    Exited,
}

/// The supervisors of the pods, by pod.
#[derive(Debug, Default)]
pub struct Supervisors {
    known: Mutex<HashMap<ContainerId, Known>>,
    /// How many watched supervisors were seen gone (a part of the listings'
    /// generation: `Backend::state_generation`).
    deaths: AtomicU64,
    /// A supervisor could not be watched: its death would go unseen by the
    /// generation, which is unknown from then on.
    unwatched: AtomicBool,
}

impl Supervisors {
    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<ContainerId, Known>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Watches the supervisor of `pod` whose runtime directory is `dir`. False when it
    /// could not be (it is not running, or no pidfd): its state stays unknown then
    /// unless it is gone already, and [`Supervisors::deaths`] cannot count it.
    pub fn watch(&self, pod: &ContainerId, dir: &Path) -> bool {
        let watched = self.try_watch(pod, dir);
        if !watched && !self.unwatched.swap(true, Ordering::SeqCst) {
            tracing::warn!(pod = %pod, "youki: cannot watch the pod's supervisor; listings ask about every pod and container from now on");
        }
        watched
    }

    fn try_watch(&self, pod: &ContainerId, dir: &Path) -> bool {
        let Some(pid) = supervisor_pid(dir) else {
            return false;
        };
        let Ok(pidfd) = pidfd_open(pid) else {
            return false;
        };
        // The pid may have been recycled between the check and the open: check again
        // now that the pidfd pins whatever process it named.
        if supervisor_pid(dir) != Some(pid) {
            return false;
        }
        self.known().insert(pod.clone(), Known::Watched(pidfd));
        true
    }

    /// True once a supervisor could not be watched (its death may go unseen).
    pub fn blind(&self) -> bool {
        self.unwatched.load(Ordering::SeqCst)
    }

    /// Records that the supervisor of `pod` is gone.
    pub fn exited(&self, pod: &ContainerId) {
        self.known().insert(pod.clone(), Known::Exited);
        self.deaths.fetch_add(1, Ordering::SeqCst);
    }

    /// How many watched supervisors are known gone, after one poll of every pidfd
    /// (a single `poll(2)`, no wait).
    pub fn deaths(&self) -> u64 {
        let mut known = self.known();
        let watched: Vec<(&ContainerId, &OwnedFd)> = known
            .iter()
            .filter_map(|(pod, k)| match k {
                Known::Watched(fd) => Some((pod, fd)),
                Known::Exited => None,
            })
            .collect();
        let mut fds: Vec<PollFd> = watched
            .iter()
            .map(|(_, fd)| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
            .collect();
        let gone: Vec<ContainerId> = match poll(&mut fds, PollTimeout::ZERO) {
            Ok(n) if n > 0 => fds
                .iter()
                .zip(&watched)
                .filter(|(fd, _)| fd.revents().is_some_and(|r| !r.is_empty()))
                .map(|(_, (pod, _))| (*pod).clone())
                .collect(),
            _ => Vec::new(),
        };
        drop(fds);
        drop(watched);
        for pod in gone {
            tracing::warn!(pod = %pod, "the pod's supervisor exited; the pod is not ready any more");
            known.insert(pod, Known::Exited);
            self.deaths.fetch_add(1, Ordering::SeqCst);
        }
        self.deaths.load(Ordering::SeqCst)
    }

    /// Forgets `pod` (removed).
    pub fn forget(&self, pod: &ContainerId) {
        self.known().remove(pod);
    }

    /// `Some(true)` while the supervisor of `pod` runs, `Some(false)` once it exited,
    /// `None` when it is not watched (its pidfd could not be opened).
    pub fn running(&self, pod: &ContainerId) -> Option<bool> {
        let mut known = self.known();
        let exited = match known.get(pod)? {
            Known::Exited => return Some(false),
            Known::Watched(pidfd) => has_exited(pidfd),
        };
        if exited {
            tracing::warn!(pod = %pod, "the pod's supervisor exited; the pod is not ready any more");
            known.insert(pod.clone(), Known::Exited);
            crate::metrics::supervisor(crate::metrics::SupervisorEvent::Lost);
            self.deaths.fetch_add(1, Ordering::SeqCst);
        }
        Some(!exited)
    }
}

/// A pidfd of `pid` (Linux 5.3).
fn pidfd_open(pid: Pid) -> std::io::Result<OwnedFd> {
    // SAFETY: a plain syscall; on success it returns a new descriptor we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// True once the process of `pidfd` has exited (a pidfd turns readable then).
fn has_exited(pidfd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(n) => n > 0,
        // Cannot tell: a running supervisor is the safer answer (a ping decides at
        // the next call that needs it).
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn a_pidfd_turns_readable_when_its_process_exits() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = Pid::from_raw(child.id() as i32);
        let pidfd = pidfd_open(pid).unwrap();
        assert!(!has_exited(&pidfd));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(has_exited(&pidfd));
    }

    #[test]
    fn an_exit_is_remembered_and_forgotten_with_the_pod() {
        let supervisors = Supervisors::default();
        let pod: ContainerId = "web.default-sandbox-0-on-node-a".parse().unwrap();
        assert_eq!(supervisors.running(&pod), None);
        let dir = tempfile::tempdir().unwrap();
        assert!(!supervisors.watch(&pod, dir.path()), "no pid file");
        assert!(supervisors.blind(), "a death it cannot see");
        supervisors.exited(&pod);
        assert_eq!(supervisors.running(&pod), Some(false));
        supervisors.forget(&pod);
        assert_eq!(supervisors.running(&pod), None);
    }
}
