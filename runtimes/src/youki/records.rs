//! The youki backend's persistent records (JSON, under `<state_dir>/youki`): each is
//! written atomically, and before the step it describes (intent first), so a crash at
//! any point leaves a record saying what may exist and must be cleaned up.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::id::ContainerId;
use crate::types::{NamespaceOptions, PortMapping, ResolvedUser};

/// How far a pod got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodPhase {
    /// RunPodSandbox is under way (or crashed half way): anything may exist.
    Creating,
    /// Set up and running.
    Ready,
    /// Stopped: containers killed, network detached.
    Stopped,
}

/// What the backend knows about a pod sandbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodRecord {
    /// The pod's identity.
    pub id: ContainerId,
    /// How far it got.
    pub phase: PodPhase,
    /// When RunPodSandbox started it.
    pub created_at: SystemTime,
    /// Pod name, namespace and uid (for CNI).
    pub name: String,
    /// Pod namespace.
    pub namespace: String,
    /// Pod uid.
    pub uid: String,
    /// The pod's hostname.
    pub hostname: String,
    /// Namespace sharing.
    pub namespaces: NamespaceOptions,
    /// hostPort mappings (for CNI DEL).
    pub port_mappings: Vec<PortMapping>,
    /// The pinned network namespace, once made.
    pub netns: Option<PathBuf>,
    /// The pinned IPC namespace, once made.
    pub ipcns: Option<PathBuf>,
    /// The pinned UTS namespace, once made.
    pub utsns: Option<PathBuf>,
    /// The pinned user namespace of a pod with one (the network, IPC and UTS pins are
    /// then made inside it).
    #[serde(default)]
    pub userns: Option<PathBuf>,
    /// The pod's IPs, primary first, once the network is attached.
    pub ips: Vec<String>,
    /// The pod cgroup (cgroupfs path) the containers go under.
    pub cgroup: String,
    /// True when berth made that cgroup (and removes it); false for kubelet's.
    pub owns_cgroup: bool,
}

/// How far a container got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerPhase {
    /// CreateContainer is under way (or crashed half way).
    Creating,
    /// Created in its supervisor.
    Created,
    /// RemoveContainer answered: it is dead and deleted in its supervisor; its rootfs,
    /// cgroup and files go in the background (or at the next start). NotFound to every
    /// verb.
    Removing,
}

/// What the backend knows about a container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// The container's identity.
    pub id: ContainerId,
    /// Its pod's.
    pub pod: ContainerId,
    /// How far it got.
    pub phase: ContainerPhase,
    /// When CreateContainer made it.
    pub created_at: SystemTime,
    /// When it was started, once it was.
    pub started_at: Option<SystemTime>,
    /// The CRI log file.
    pub log_path: Option<PathBuf>,
    /// Its cgroup (cgroupfs path).
    pub cgroup: String,
    /// Who it runs as, once resolved.
    pub user: Option<ResolvedUser>,
    /// Its working directory (for exec).
    pub cwd: String,
    /// The signal StopContainer sends first.
    pub stop_signal: i32,
    /// True when it has a PID namespace of its own.
    pub own_pid_namespace: bool,
}

/// A container's exit, as its supervisor recorded it (before telling anyone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The init's host pid.
    pub pid: u32,
    /// Exit code; 128 + n for signal n.
    pub exit_code: i32,
    /// When it was started, if it was.
    pub started_at: Option<SystemTime>,
    /// When the supervisor reaped it.
    pub finished_at: SystemTime,
    /// True when the kernel's OOM killer killed a process of its cgroup.
    pub oom_killed: bool,
    /// True when the supervisor died before the container and the exit status was
    /// lost (`exit_code` is then 255, and `finished_at` when berth noticed).
    #[serde(default)]
    pub lost: bool,
}

impl ExitRecord {
    /// The exit of a container whose supervisor died first: status unknown (255),
    /// finished when berth noticed.
    pub fn lost(started_at: Option<SystemTime>) -> ExitRecord {
        ExitRecord {
            pid: 0,
            exit_code: 255,
            started_at,
            finished_at: SystemTime::now(),
            oom_killed: false,
            lost: true,
        }
    }
}

/// Writes `data` to `path` so that a reader (or a crash) never sees a half-written
/// file: a sibling temp file is written and fsynced, renamed over, and the directory
/// fsynced.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Saves `record` as JSON at `path` (atomically).
pub fn save<T: Serialize>(path: &Path, record: &T) -> Result<()> {
    let data = serde_json::to_vec_pretty(record)
        .map_err(|e| Error::internal("youki", format!("encoding {}", path.display()), e))?;
    write_atomic(path, &data).io_context(|| format!("writing {}", path.display()))
}

/// Loads the JSON record at `path`; `Ok(None)` when there is none.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(data) => serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| Error::DataLoss {
                what: path.display().to_string(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load_round_trips_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit.json");
        let record = ExitRecord {
            pid: 42,
            exit_code: 137,
            started_at: Some(SystemTime::UNIX_EPOCH),
            finished_at: SystemTime::now(),
            oom_killed: true,
            lost: false,
        };
        save(&path, &record).unwrap();
        assert_eq!(load::<ExitRecord>(&path).unwrap(), Some(record));
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "only exit.json remains");
    }

    #[test]
    fn a_missing_record_is_none_and_a_corrupt_one_is_data_loss() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pod.json");
        assert_eq!(load::<ExitRecord>(&path).unwrap(), None);
        fs::write(&path, b"{not json").unwrap();
        assert!(matches!(
            load::<ExitRecord>(&path),
            Err(Error::DataLoss { .. })
        ));
    }
}
