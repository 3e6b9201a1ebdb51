//! The libcontainer calls the supervisor makes. Each runs in the supervisor's own
//! process: libcontainer forks the container's processes from here (they become our
//! children) and writes the spec's `oom_score_adj` into this process first.

use std::fs::{self, File};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxSeccomp, Process, Spec, UserBuilder};

use super::error::{Error, Result};

/// The descriptors that become a process's fd 0, 1 and 2.
pub struct Stdio {
    /// fd 0.
    pub stdin: OwnedFd,
    /// fd 1.
    pub stdout: OwnedFd,
    /// fd 2.
    pub stderr: OwnedFd,
}

impl Stdio {
    /// `/dev/null` as stdin, and the given write ends.
    pub fn null_in(stdout: OwnedFd, stderr: OwnedFd) -> std::io::Result<Stdio> {
        Ok(Stdio {
            stdin: File::open("/dev/null")?.into(),
            stdout,
            stderr,
        })
    }
}

/// Where a new process's standard streams go.
pub enum Io {
    /// These descriptors.
    Fds(Stdio),
    /// A terminal libcontainer makes in the container, whose master it sends to this
    /// console socket.
    Terminal(PathBuf),
}

/// An error with its whole source chain (libcontainer's top-level messages alone,
/// such as "failed to create container: io error", say too little).
fn chain(e: &dyn std::error::Error) -> String {
    crate::error::error_chain(e)
}

fn builder(id: &str, root: &Path, io: Io) -> Result<ContainerBuilder> {
    fs::create_dir_all(root).map_err(|e| Error::io(format!("creating {}", root.display()), e))?;
    let builder = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_root_path(root)
        .and_then(|b| b.validate_id())
        .map_err(|e| Error::libcontainer(format!("container {id}"), e))?;
    Ok(match io {
        Io::Fds(stdio) => builder
            .with_stdin(stdio.stdin)
            .with_stdout(stdio.stdout)
            .with_stderr(stdio.stderr),
        Io::Terminal(console) => builder.with_console_socket(Some(console)),
    })
}

/// Runs `build`, which makes libcontainer write a spec's oom_score_adj into this
/// process before it forks, and puts ours back afterwards: a BestEffort container
/// (1000) must not make the pod's supervisor the OOM killer's first choice. Going
/// back down to our own earlier value needs no privilege.
fn keeping_our_oom_score<T>(build: impl FnOnce() -> Result<T>) -> Result<T> {
    let own = fs::read_to_string("/proc/self/oom_score_adj")
        .map_err(|e| Error::io("reading our oom_score_adj", e))?;
    let built = build();
    if let Err(e) = fs::write("/proc/self/oom_score_adj", own.trim()) {
        eprintln!("restoring our oom_score_adj {}: {e}", own.trim());
    }
    built
}

/// Creates the container `id` from `<bundle>/config.json`: its init is forked and
/// waits for [`start`]. Write ends passed in `io` are closed here when this returns,
/// so the caller sees EOF once the container's last process is gone. With a terminal
/// the spec must ask for one (`process.terminal`). Returns the init's host pid.
pub fn create(id: &str, root: &Path, bundle: &Path, io: Io) -> Result<Pid> {
    let container = keeping_our_oom_score(|| {
        builder(id, root, io)?
            .with_executor(FilteredExecutor::default())
            .as_init(bundle)
            .with_systemd(false)
            .with_detach(true)
            .build()
            .map_err(|e| Error::libcontainer(format!("creating container {id}"), e))
    })?;
    container
        .pid()
        .ok_or_else(|| Error::Broken(format!("container {id} was created without an init pid")))
}

/// Lets the created container's init exec the process.
pub fn start(id: &str, root: &Path) -> Result<()> {
    let mut container = load(id, root)?;
    container
        .start()
        .map_err(|e| Error::libcontainer(format!("starting container {id}"), e))
}

/// libcontainer's state of the container `id`.
fn load(id: &str, root: &Path) -> Result<Container> {
    Container::load(root.join(id))
        .map_err(|e| Error::libcontainer(format!("loading the state of container {id}"), e))
}

/// Who an exec'd process runs as, and where.
pub struct ExecUser {
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// Supplemental gids.
    pub additional_gids: Vec<u32>,
    /// Working directory; empty for the spec's default.
    pub cwd: String,
}

/// Runs `args` in the running container `id` (joining its namespaces and cgroup) with
/// the container's own process settings, as containerd's exec does: environment,
/// capabilities, no_new_privs, rlimits, oom_score_adj, AppArmor profile, and its
/// seccomp filter; `user` says who and where. With a terminal (`io` is
/// [`Io::Terminal`]) `TERM=xterm` is set, as kubelet's runtimes do. Returns the new
/// process's host pid, our child and the leader of a session of its own.
pub fn exec(id: &str, root: &Path, args: Vec<String>, user: ExecUser, io: Io) -> Result<Pid> {
    let container = load(id, root)?;
    let config = container.bundle().join("config.json");
    let spec =
        Spec::load(&config).map_err(|e| Error::spec(format!("reading {}", config.display()), e))?;
    let tty = matches!(io, Io::Terminal(_));
    let process = exec_process(&spec, args, user, tty)?;
    // libcontainer reads the process from a file; ours lives as long as the call.
    let file = root
        .join(id)
        .join(format!("exec-{}.json", std::process::id()));
    let json = serde_json::to_vec(&process).map_err(|e| Error::spec("encoding the process", e))?;
    fs::write(&file, json).map_err(|e| Error::io(format!("writing {}", file.display()), e))?;
    let executor = FilteredExecutor {
        seccomp: spec.linux().as_ref().and_then(|l| l.seccomp().clone()),
        no_new_privileges: process.no_new_privileges().unwrap_or(false),
    };
    let built = keeping_our_oom_score(|| {
        builder(id, root, io)?
            .with_executor(executor)
            .as_tenant()
            .with_process(Some(&file))
            .with_detach(true)
            .build()
            .map_err(|e| Error::libcontainer(format!("exec in {id}"), e))
    });
    let _ = fs::remove_file(&file);
    built
}

/// The process an exec runs: the container's, with `args`, `user`, its working
/// directory and terminal.
fn exec_process(spec: &Spec, args: Vec<String>, user: ExecUser, tty: bool) -> Result<Process> {
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(args));
    process.set_terminal(Some(tty));
    process.set_console_size(None);
    process.set_user(
        UserBuilder::default()
            .uid(user.uid)
            .gid(user.gid)
            .additional_gids(user.additional_gids)
            .build()
            .map_err(|e| Error::spec("building the exec's user", e))?,
    );
    if !user.cwd.is_empty() {
        process.set_cwd(PathBuf::from(user.cwd));
    }
    if tty {
        let mut env: Vec<String> = process
            .env()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| !e.starts_with("TERM="))
            .collect();
        env.push("TERM=xterm".to_string());
        process.set_env(Some(env));
    }
    Ok(process)
}

/// Starts a container's process with every signal at its default action and none
/// blocked, and runs an exec'd process under its container's seccomp filter.
///
/// An ignored signal stays ignored across exec, and the supervisor ignores SIGPIPE (as
/// every Rust program does) and whatever berth's own parent ignored (SIGHUP under
/// nohup; SIGINT and SIGQUIT from a shell without job control): without the reset a
/// container's `sh` could not trap its stop signal, and a pipe's reader closing would
/// not end its writer. runc resets them too.
///
/// libcontainer's tenant
/// builder keeps the container's capabilities and namespaces but drops its filter, so
/// this executor loads it in the new process right before the `execvp`. It runs after
/// the capabilities are dropped: without CAP_SYS_ADMIN the kernel accepts a filter only
/// under no_new_privs, so a container whose own process runs without it gets its
/// exec'd processes with it (they cannot gain privileges through setuid binaries)
/// rather than without a filter.
#[derive(Clone, Default)]
struct FilteredExecutor {
    seccomp: Option<LinuxSeccomp>,
    no_new_privileges: bool,
}

impl Executor for FilteredExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        reset_signals();
        if let Some(filter) = &self.seccomp {
            if !self.no_new_privileges && !has_cap_sys_admin() {
                // SAFETY: prctl with integer arguments on our own process.
                if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                    return Err(ExecutorError::Other(format!(
                        "PR_SET_NO_NEW_PRIVS: {}",
                        std::io::Error::last_os_error()
                    )));
                }
            }
            let notify = libcontainer::seccomp::initialize_seccomp(filter).map_err(|e| {
                ExecutorError::Other(format!(
                    "loading the container's seccomp filter: {}",
                    chain(&e)
                ))
            })?;
            if let Some(fd) = notify {
                // SCMP_ACT_NOTIFY has no listener for exec'd processes.
                let _ = nix::unistd::close(fd);
            }
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

/// Every signal back to its default action, none blocked. Runs in the new,
/// single-threaded process right before it execs. Through the raw system call: glibc's
/// `sigaction` refuses the two real-time signals it keeps for itself (32 and 33),
/// which the supervisor's children otherwise start with ignored. An all-zero kernel
/// `struct sigaction` is SIG_DFL with no flags and an empty mask on every
/// architecture's layout. Best effort: a container's seccomp filter may refuse the
/// calls, and the process then starts as it would have without the reset.
fn reset_signals() {
    let default = [0u64; 4];
    for signal in 1..=libc::SIGRTMAX() {
        if signal != libc::SIGKILL && signal != libc::SIGSTOP {
            // SAFETY: installs SIG_DFL from a zeroed kernel sigaction of the right
            // size for the 8-byte kernel sigset; no handler, no old action written.
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    signal,
                    default.as_ptr(),
                    std::ptr::null_mut::<u64>(),
                    8usize,
                )
            };
        }
    }
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
}

/// CAP_SYS_ADMIN's bit number (linux/capability.h).
const CAP_SYS_ADMIN: u32 = 21;

/// True when this process has CAP_SYS_ADMIN in its effective set.
fn has_cap_sys_admin() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

/// Removes libcontainer's state and the container's cgroup (killing what is left in
/// it). The caller has reaped the init. A container libcontainer has no state for is
/// deleted already.
pub fn delete(id: &str, root: &Path) -> Result<()> {
    let dir = root.join(id);
    if !dir.join("state.json").exists() {
        return match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io(format!("removing {}", dir.display()), e))
            }
            _ => Ok(()),
        };
    }
    let mut container = load(id, root)?;
    container
        .delete(true)
        .map_err(|e| Error::libcontainer(format!("deleting container {id}"), e))
}
