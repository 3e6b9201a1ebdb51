//! The libcontainer calls the supervisor makes. Each runs in the supervisor's own
//! process: libcontainer forks the container's processes from here (they become our
//! children) and writes the spec's `oom_score_adj` into this process first.

use std::fs::{self, File};
use std::os::fd::OwnedFd;
use std::path::Path;

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use nix::unistd::Pid;

/// The descriptors that become a process's fd 0, 1 and 2.
pub struct Stdio {
    /// fd 0 (`/dev/null` until attach exists).
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

/// An error with its whole source chain (libcontainer's top-level messages alone,
/// such as "failed to create container: io error", say too little).
fn chain(e: &dyn std::error::Error) -> String {
    crate::error::error_chain(e)
}

fn builder(id: &str, root: &Path, stdio: Stdio) -> Result<ContainerBuilder, String> {
    fs::create_dir_all(root).map_err(|e| format!("creating {}: {e}", root.display()))?;
    ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_root_path(root)
        .and_then(|b| b.validate_id())
        .map(|b| {
            b.with_stdin(stdio.stdin)
                .with_stdout(stdio.stdout)
                .with_stderr(stdio.stderr)
        })
        .map_err(|e| chain(&e))
}

/// Creates the container `id` from `<bundle>/config.json`: its init is forked and
/// waits for [`start`]. The write ends in `stdio` are closed here when this returns,
/// so the caller sees EOF once the container's last process is gone. Returns the
/// init's host pid.
pub fn create(id: &str, root: &Path, bundle: &Path, stdio: Stdio) -> Result<Pid, String> {
    // libcontainer writes the spec's oom_score_adj into this process before forking.
    // Put ours back afterwards so a BestEffort container (1000) does not make the
    // pod's supervisor the OOM killer's first choice; going back down to our own
    // earlier value needs no privilege.
    let own = fs::read_to_string("/proc/self/oom_score_adj")
        .map_err(|e| format!("reading our oom_score_adj: {e}"))?;
    let built = builder(id, root, stdio)?
        .as_init(bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(|e| chain(&e));
    if let Err(e) = fs::write("/proc/self/oom_score_adj", own.trim()) {
        eprintln!("restoring our oom_score_adj {}: {e}", own.trim());
    }
    built?
        .pid()
        .ok_or_else(|| format!("container {id} was created without an init pid"))
}

/// Lets the created container's init exec the process.
pub fn start(id: &str, root: &Path) -> Result<(), String> {
    let mut container = Container::load(root.join(id)).map_err(|e| chain(&e))?;
    container.start().map_err(|e| chain(&e))
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

/// Runs `args` in the running container `id` (joining its namespaces and cgroup).
/// Returns the new process's host pid, our child.
pub fn exec(
    id: &str,
    root: &Path,
    args: Vec<String>,
    user: ExecUser,
    stdio: Stdio,
) -> Result<Pid, String> {
    builder(id, root, stdio)?
        .as_tenant()
        .with_container_args(args)
        .with_user(Some(user.uid))
        .with_group(Some(user.gid))
        .with_additional_gids(user.additional_gids)
        .with_cwd((!user.cwd.is_empty()).then_some(user.cwd))
        .with_detach(true)
        .build()
        .map_err(|e| chain(&e))
}

/// Removes libcontainer's state and the container's cgroup (killing what is left in
/// it). The caller has reaped the init. A container libcontainer has no state for is
/// deleted already.
pub fn delete(id: &str, root: &Path) -> Result<(), String> {
    let dir = root.join(id);
    if !dir.join("state.json").exists() {
        return match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("removing {}: {e}", dir.display()))
            }
            _ => Ok(()),
        };
    }
    let mut container = Container::load(dir).map_err(|e| chain(&e))?;
    container.delete(true).map_err(|e| chain(&e))
}
