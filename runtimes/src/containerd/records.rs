//! What berth keeps of each containerd container, next to its rootfs
//! (`<container dir>/containerd.json`, written before containerd hears of it): what
//! containerd does not know (the CRI log path, who the process runs as, the spec of an
//! exec, the pod) and what it forgets once a task is deleted.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::id::ContainerId;
use crate::types::ResolvedUser;

/// The record's file name in the container's directory.
pub const FILE: &str = "containerd.json";

/// How far a container got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Being made; a crash here leaves something to undo.
    Creating,
    /// Its task exists (created or running or exited).
    Created,
    /// Removed as far as CRI can tell (RemoveContainer answered); what is left in
    /// containerd and on the host is being taken down, and is retried by the pod's
    /// removal, a create of the same id and berth's next start until it is gone.
    Removing,
}

/// An exit containerd told berth of, kept after the task is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    /// The exit code (128 + signal for a signal).
    pub code: i32,
    /// When.
    pub at: SystemTime,
    /// Whether the kernel's OOM killer killed a process of the container (read from
    /// its cgroup when the exit is first seen, while the task still holds it).
    #[serde(default)]
    pub oom_killed: bool,
}

/// One container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Its id.
    pub id: ContainerId,
    /// Its pod.
    pub pod: ContainerId,
    /// How far it got.
    pub phase: Phase,
    /// When CreateContainer made it.
    pub created_at: SystemTime,
    /// When it started.
    pub started_at: Option<SystemTime>,
    /// Its exit once known.
    pub exit: Option<Exit>,
    /// The CRI log file.
    pub log_path: Option<PathBuf>,
    /// Run with a terminal.
    pub tty: bool,
    /// Has a stdin (its task's stdio are FIFOs served by `berth log-shim --fifos`).
    #[serde(default)]
    pub stdin: bool,
    /// The first attachment's end closes stdin.
    #[serde(default)]
    pub stdin_once: bool,
    /// The first signal StopContainer sends.
    pub stop_signal: i32,
    /// Its cgroup (stats).
    pub cgroup: String,
    /// Who its process runs as.
    pub user: Option<ResolvedUser>,
    /// The process part of its spec: execs run with it (user, env, cwd,
    /// capabilities, security profiles), their own command.
    pub process: Option<oci_spec::runtime::Process>,
}

impl Record {
    /// Writes the record (atomically, durably) into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(|e| {
            Error::internal(
                "containerd",
                format!("encoding the record of {}", self.id),
                e,
            )
        })?;
        let tmp = dir.join(format!("{FILE}.tmp"));
        std::fs::write(&tmp, text).io_context(|| format!("writing {}", tmp.display()))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .io_context(|| format!("syncing {}", tmp.display()))?;
        std::fs::rename(&tmp, dir.join(FILE)).io_context(|| format!("renaming {}", tmp.display()))
    }

    /// The record in `dir`, if there is one.
    pub fn load(dir: &Path) -> Result<Option<Record>> {
        let path = dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::DataLoss {
                    what: path.display().to_string(),
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }
}
