//! The per-pod supervisor, `berth shim`: a separate program that owns a pod's
//! containers. It shares the `berth` binary but none of the agent's process: its one
//! door is [`main`], called by `berth`'s `main.rs` (and by this crate's
//! `berth-youki-shim` test binary) before any async runtime or thread exists.
//!
//! Its own rules, unlike the rest of the crate: one thread and no async runtime (it
//! forks, and libcontainer forks); one `poll(2)` loop that nothing may block for long
//! (a client too far behind on a stream is cut off, not waited for); its errors go to
//! its log, since nobody reads its stderr. The agent reaches it only through the protocol
//! in [`wire`] (spoken by the youki backend's `client.rs`); from the youki backend it
//! borrows only the on-disk exit records, the clock and the cgroup v1/v2 helpers.
//!
//! Why a process of its own: libcontainer writes `oom_score_adj` and dumpability into
//! the *calling* process and makes the container's init the caller's child, so the
//! long-lived, multi-threaded agent must never call it; and the containers must outlive
//! an agent restart with their stdio, logs and exit statuses intact.
//!
//! Shape: the agent runs
//! `<berth> shim --pod-dir D --libcontainer-root R [--pid-namespace] [--userns PIN]`.
//! That process forks the supervisor and exits once the supervisor's socket is bound
//! (exit status 0) or with the reason it could not be (status 1, on stderr). The
//! supervisor starts a session of its own (setsid), so it is nobody's child but
//! init's, becomes the child subreaper of everything it starts, and serves
//! `D/shim.sock` from one thread with a `poll(2)` loop (no async runtime: ~1 MB of
//! anonymous memory). With `--pid-namespace` it forks the pod's PID-namespace holder
//! (berth's locked-down pod init) first (a PID namespace owned by the pod's user
//! namespace `PIN` when given). Its own errors go to `D/shim.log`.

mod console;
mod containers;
pub mod crilog;
mod ctr;
pub mod error;
mod exec;
mod fanout;
mod holder;
mod io;
mod server;
pub mod wire;

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::ExitCode;

use nix::unistd::{dup2, fork, pipe2, setsid, ForkResult};

use error::{Error, Result};

/// The protocol version this build speaks (reported in `Pong.version`).
pub const PROTOCOL_VERSION: u32 = 1;

/// What `berth shim` is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// The pod's runtime directory: `shim.sock`, `shim.log`, `shim.pid`.
    pub pod_dir: PathBuf,
    /// libcontainer's state root.
    pub libcontainer_root: PathBuf,
    /// Hold a PID namespace for the pod (a pod-level `pid` namespace).
    pub pid_namespace: bool,
    /// The pod's user namespace pin: the held PID namespace is made owned by it.
    pub userns: Option<PathBuf>,
}

impl Args {
    /// The command-line arguments after `shim`, for spawning.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut out: Vec<OsString> = vec![
            "--pod-dir".into(),
            self.pod_dir.clone().into(),
            "--libcontainer-root".into(),
            self.libcontainer_root.clone().into(),
        ];
        if self.pid_namespace {
            out.push("--pid-namespace".into());
        }
        if let Some(userns) = &self.userns {
            out.push("--userns".into());
            out.push(userns.clone().into());
        }
        out
    }

    /// Parses the arguments after `shim`.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Args> {
        let missing = |what: &str| Error::Invalid(what.to_string());
        let (mut pod_dir, mut root, mut pid_namespace, mut userns) = (None, None, false, None);
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            match arg.to_str() {
                Some("--pod-dir") => pod_dir = args.next().map(PathBuf::from),
                Some("--libcontainer-root") => root = args.next().map(PathBuf::from),
                Some("--pid-namespace") => pid_namespace = true,
                Some("--userns") => {
                    userns = Some(
                        args.next()
                            .map(PathBuf::from)
                            .ok_or_else(|| missing("--userns needs a path"))?,
                    )
                }
                _ => return Err(Error::Invalid(format!("unexpected argument {arg:?}"))),
            }
        }
        Ok(Args {
            pod_dir: pod_dir.ok_or_else(|| missing("--pod-dir is required"))?,
            libcontainer_root: root.ok_or_else(|| missing("--libcontainer-root is required"))?,
            pid_namespace,
            userns,
        })
    }
}

/// `berth shim …`: `args` are the arguments after `shim`. Returns once the supervisor
/// is serving (in its own process) or failed to start.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args = match Args::parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("berth shim: {e}");
            return ExitCode::from(2);
        }
    };
    // The supervisor outlives the agent: descriptors the agent inherited without
    // CLOEXEC (a lock, a listening socket from its service manager) would stay open
    // as long as the pod runs. Nothing of ours is open yet beyond stdio.
    // SAFETY: a plain syscall; no Rust object owns a descriptor above 2 at this point.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
    }
    let (ready_r, ready_w) = match pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("berth shim: pipe: {e}");
            return ExitCode::FAILURE;
        }
    };
    // SAFETY: nothing but this thread runs yet (no runtime, no threads spawned).
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => {
            drop(ready_w);
            launcher_wait(ready_r)
        }
        Ok(ForkResult::Child) => {
            drop(ready_r);
            let code = supervise(&args, ready_w);
            std::process::exit(code)
        }
        Err(e) => {
            eprintln!("berth shim: fork: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The launcher: relays the supervisor's verdict (empty = ready, else the error).
fn launcher_wait(ready: OwnedFd) -> ExitCode {
    let mut verdict = String::new();
    let _ = File::from(ready).read_to_string(&mut verdict);
    if verdict.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("berth shim: {verdict}");
        ExitCode::FAILURE
    }
}

/// The supervisor process: detach, bind, report readiness, serve.
fn supervise(args: &Args, ready: OwnedFd) -> i32 {
    let mut ready = File::from(ready);
    let server = match detach(args).and_then(|()| server::Supervisor::bind(args)) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.write_all(e.chain().as_bytes());
            return 1;
        }
    };
    // Closing the pipe without a word tells the launcher we serve.
    drop(ready);
    match server.run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("supervisor {}: {}", args.pod_dir.display(), e.chain());
            1
        }
    }
}

/// New session, stdio to `/dev/null` and `shim.log`, subreaper, pid file.
fn detach(args: &Args) -> Result<()> {
    setsid().map_err(|e| Error::io("setsid", e))?;
    std::fs::create_dir_all(&args.pod_dir)
        .map_err(|e| Error::io(format!("creating {}", args.pod_dir.display()), e))?;
    let log_path = args.pod_dir.join("shim.log");
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| Error::io(format!("opening {}", log_path.display()), e))?;
    let null = File::open("/dev/null").map_err(|e| Error::io("opening /dev/null", e))?;
    for (from, to) in [
        (null.as_raw_fd(), 0),
        (log.as_raw_fd(), 1),
        (log.as_raw_fd(), 2),
    ] {
        dup2(from, to).map_err(|e| Error::io("dup2", e))?;
    }
    // Orphans of the pod's processes come to us rather than to init, so we reap them
    // and see the exit of every container init even after its parent changed.
    // SAFETY: plain prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(Error::io(
            "PR_SET_CHILD_SUBREAPER",
            std::io::Error::last_os_error(),
        ));
    }
    std::env::set_current_dir("/").map_err(|e| Error::io("chdir /", e))?;
    let pid_file = args.pod_dir.join("shim.pid");
    crate::youki::records::write_atomic(&pid_file, std::process::id().to_string().as_bytes())
        .map_err(|e| Error::io(format!("writing {}", pid_file.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_round_trip() {
        let args = Args {
            pod_dir: "/run/berth/youki/pods/p".into(),
            libcontainer_root: "/run/berth/youki/libcontainer".into(),
            pid_namespace: true,
            userns: Some("/run/berth/userns/p".into()),
        };
        assert_eq!(Args::parse(args.to_args()).unwrap(), args);
        let plain = Args {
            pid_namespace: false,
            userns: None,
            ..args
        };
        assert_eq!(Args::parse(plain.to_args()).unwrap(), plain);
    }

    #[test]
    fn bad_args_are_named() {
        let err = Args::parse(["--bogus".into()]).unwrap_err().to_string();
        assert!(err.contains("--bogus"), "{err}");
        let err = Args::parse(["--pod-dir".into(), "/x".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--libcontainer-root"), "{err}");
    }
}
