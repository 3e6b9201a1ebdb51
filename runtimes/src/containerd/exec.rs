//! ExecSync, UpdateContainerResources and ReopenContainerLog.
//!
//! An exec is a containerd exec process of the container's task, run with the
//! container's own process spec (user, environment, working directory, capabilities,
//! security profiles) and the command asked for. Its stdout and stderr come through
//! FIFOs berth makes in the container's directory; the shim has copied everything
//! into them once the process is deleted, so the output is complete then.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::{
    DeleteProcessRequest, ExecProcessRequest, KillRequest, StartRequest, UpdateTaskRequest,
    WaitRequest,
};
use nix::sys::signal::Signal;
use prost_types::Any;
use tokio::net::unix::pipe;
use tokio::sync::oneshot;

use super::object_id as key;
use super::status::TaskState;
use super::{logger, Containerd, NAME};
use crate::error::{Error, IoContext, Result};
use crate::id::ContainerId;
use crate::types::{ExecOutput, ExecRequest};

/// The type containerd files an OCI process spec under.
const PROCESS_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

/// The type containerd files OCI Linux resources under.
const RESOURCES_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";

/// The most output an ExecSync keeps per stream (as the supervisor's).
const MAX_OUTPUT: usize = 16 * 1024 * 1024;

impl Containerd {
    /// ExecSync. When the timeout passes only the command is killed and the answer is
    /// `DeadlineExceeded`.
    pub async fn exec_sync(&self, id: &ContainerId, request: &ExecRequest) -> Result<ExecOutput> {
        if request.cmd.is_empty() {
            return Err(Error::InvalidSpec(format!(
                "ExecSync in {id}: the command is empty"
            )));
        }
        let record = self.record(id)?;
        if !matches!(self.task_state(&record).await?, TaskState::Running { .. }) {
            return Err(Error::FailedPrecondition(format!(
                "ExecSync in {id}: the container is not running"
            )));
        }
        let mut process = record.process.clone().unwrap_or_default();
        process.set_args(Some(request.cmd.clone()));
        process.set_terminal(Some(false));
        let exec_id = new_exec_id();
        let dir = self.exec_dir(id, &exec_id);
        let fifos = make_fifos(&dir, &["stdout", "stderr"])?;
        let (stdout, stderr) = (&fifos[0], &fifos[1]);
        let result = self
            .run_exec(id, &exec_id, &process, stdout, stderr, request)
            .await;
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    async fn run_exec(
        &self,
        id: &ContainerId,
        exec_id: &str,
        process: &oci_spec::runtime::Process,
        stdout: &Path,
        stderr: &Path,
        request: &ExecRequest,
    ) -> Result<ExecOutput> {
        let (out, out_done) = collect(stdout)?;
        let (err, err_done) = collect(stderr)?;
        let k = key(id);
        let paths = ExecPaths {
            stdout: stdout.display().to_string(),
            stderr: stderr.display().to_string(),
            ..Default::default()
        };
        self.start_exec(id, exec_id, process, &paths, &request.cmd)
            .await?;
        let timeout = request.timeout.filter(|t| !t.is_zero());
        let mut timed_out = false;
        let exit_code = loop {
            let mut wait = self.request(WaitRequest {
                container_id: k.clone(),
                exec_id: exec_id.to_string(),
            });
            // Waits are as long as the command: no call deadline.
            wait.set_timeout(Duration::from_secs(365 * 24 * 3600));
            let waited = match timeout.filter(|_| !timed_out) {
                Some(t) => match tokio::time::timeout(t, self.tasks().wait(wait)).await {
                    Ok(w) => w,
                    Err(_) => {
                        timed_out = true;
                        let _ = self
                            .tasks()
                            .kill(self.request(KillRequest {
                                container_id: k.clone(),
                                exec_id: exec_id.to_string(),
                                signal: Signal::SIGKILL as u32,
                                all: false,
                            }))
                            .await;
                        continue;
                    }
                },
                None => self.tasks().wait(wait).await,
            };
            match waited {
                Ok(reply) => break reply.into_inner().exit_status as i32,
                Err(s) => {
                    self.delete_exec(&k, exec_id).await;
                    return Err(self.fail(format!("waiting for an exec in {id}"), &s));
                }
            }
        };
        self.delete_exec(&k, exec_id).await;
        let _ = out_done.send(());
        let _ = err_done.send(());
        let stdout = out.await.unwrap_or_default();
        let stderr = err.await.unwrap_or_default();
        if timed_out {
            return Err(Error::DeadlineExceeded {
                operation: format!("ExecSync {:?} in container {id}", request.cmd),
                after: timeout.unwrap_or_default(),
            });
        }
        Ok(ExecOutput {
            stdout,
            stderr,
            exit_code,
        })
    }

    /// The directory of the FIFOs of exec `exec_id` in `id`.
    pub(super) fn exec_dir(&self, id: &ContainerId, exec_id: &str) -> PathBuf {
        self.sandboxes.container_dir(id).join("execs").join(exec_id)
    }

    /// Creates and starts the exec process `exec_id` of `process` in `id`, its stdio
    /// on the FIFOs `paths`. A process that cannot start is deleted again.
    pub(super) async fn start_exec(
        &self,
        id: &ContainerId,
        exec_id: &str,
        process: &oci_spec::runtime::Process,
        paths: &ExecPaths,
        cmd: &[String],
    ) -> Result<()> {
        let k = key(id);
        let spec = serde_json::to_vec(process)
            .map_err(|e| Error::internal(NAME, format!("encoding an exec of {id}"), e))?;
        self.tasks()
            .exec(self.request(ExecProcessRequest {
                container_id: k.clone(),
                exec_id: exec_id.to_string(),
                stdin: paths.stdin.clone(),
                stdout: paths.stdout.clone(),
                stderr: paths.stderr.clone(),
                terminal: process.terminal().unwrap_or(false),
                spec: Some(Any {
                    type_url: PROCESS_TYPE.to_string(),
                    value: spec,
                }),
            }))
            .await
            .map_err(|s| self.fail(format!("Exec in {id}"), &s))?;
        let started = self
            .tasks()
            .start(self.request(StartRequest {
                container_id: k.clone(),
                exec_id: exec_id.to_string(),
            }))
            .await;
        if let Err(s) = started {
            self.delete_exec(&k, exec_id).await;
            return Err(exec_refused(
                id,
                cmd,
                self.fail(format!("Exec {cmd:?} in {id}"), &s),
            ));
        }
        Ok(())
    }

    /// Waits for the exec process `exec_id` of `id` to end; its exit code.
    pub(super) async fn wait_exec(&self, id: &ContainerId, exec_id: &str) -> Result<i32> {
        let mut wait = self.request(WaitRequest {
            container_id: key(id),
            exec_id: exec_id.to_string(),
        });
        // Waits are as long as the command: no call deadline.
        wait.set_timeout(Duration::from_secs(365 * 24 * 3600));
        self.tasks()
            .wait(wait)
            .await
            .map(|reply| reply.into_inner().exit_status as i32)
            .map_err(|s| self.fail(format!("waiting for an exec in {id}"), &s))
    }

    /// Deletes an exec process; the shim has then copied all its output.
    pub(super) async fn delete_exec(&self, k: &str, exec_id: &str) {
        let deleted = self
            .tasks()
            .delete_process(self.request(DeleteProcessRequest {
                container_id: k.to_string(),
                exec_id: exec_id.to_string(),
            }))
            .await;
        if let Err(s) = deleted {
            tracing::debug!(container = k, exec_id, error = %s, "deleting an exec process");
        }
    }

    /// UpdateContainerResources, through containerd (runc updates the cgroup).
    pub async fn update_resources(
        &self,
        id: &ContainerId,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        let record = self.record(id)?;
        if matches!(
            self.task_state(&record).await?,
            TaskState::Missing | TaskState::Exited(_)
        ) {
            return Err(Error::FailedPrecondition(format!(
                "UpdateContainerResources {id}: the container has no cgroup (not created, or exited)"
            )));
        }
        let value = serde_json::to_vec(resources)
            .map_err(|e| Error::internal(NAME, format!("encoding resources of {id}"), e))?;
        self.tasks()
            .update(self.request(UpdateTaskRequest {
                container_id: key(id),
                resources: Some(Any {
                    type_url: RESOURCES_TYPE.to_string(),
                    value,
                }),
                ..Default::default()
            }))
            .await
            .map_err(|s| self.fail(format!("UpdateContainerResources {id}"), &s))?;
        Ok(())
    }

    /// ReopenContainerLog: the container's log shim reopens the file.
    pub async fn reopen_log(&self, id: &ContainerId) -> Result<()> {
        let record = self.record(id)?;
        if !matches!(self.task_state(&record).await?, TaskState::Running { .. }) {
            return Err(Error::FailedPrecondition(format!(
                "ReopenContainerLog {id}: the container is not running"
            )));
        }
        logger::signal_reopen(&self.sandboxes.container_dir(id))?;
        // The shim reopens on its own time; kubelet (and critest) expect the new file
        // once the call returns.
        let Some(path) = record.log_path else {
            return Ok(());
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !path.exists() {
            if std::time::Instant::now() > deadline {
                return Err(Error::DeadlineExceeded {
                    operation: format!("ReopenContainerLog {id}: reopening {}", path.display()),
                    after: Duration::from_secs(5),
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }
}

/// A start refused because the command cannot run is the caller's error.
fn exec_refused(id: &ContainerId, cmd: &[String], e: Error) -> Error {
    let text = e.to_string();
    if text.contains("executable file not found") || text.contains("no such file or directory") {
        Error::InvalidSpec(format!("Exec in {id}: {cmd:?} cannot be run: {text}"))
    } else {
        e
    }
}

/// Makes `dir` (private) with the FIFOs `names` of one exec; their paths.
pub(super) fn make_fifos(dir: &Path, names: &[&str]) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).io_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .io_context(|| format!("securing {}", dir.display()))?;
    let mut paths = Vec::new();
    for name in names {
        let path = dir.join(name);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(|e| Error::io(format!("making the FIFO {}", path.display()), e.into()))?;
        paths.push(path);
    }
    Ok(paths)
}

/// Reads the FIFO at `path` until told the writer is done, then drains it. Opened
/// read-write so that no end-of-file comes before the shim opened its end.
fn collect(path: &Path) -> Result<(tokio::task::JoinHandle<Vec<u8>>, oneshot::Sender<()>)> {
    let receiver = pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(path)
        .io_context(|| format!("opening {}", path.display()))?;
    let (done_tx, mut done_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut data = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let take = |data: &mut Vec<u8>, n: usize, buf: &[u8]| {
            let room = MAX_OUTPUT.saturating_sub(data.len());
            data.extend_from_slice(&buf[..n.min(room)]);
        };
        loop {
            tokio::select! {
                ready = receiver.readable() => {
                    if ready.is_err() { break; }
                    match receiver.try_read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => take(&mut data, n, &buf),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                        Err(_) => break,
                    }
                }
                _ = &mut done_rx => {
                    loop {
                        match receiver.try_read(&mut buf) {
                            Ok(n) if n > 0 => take(&mut data, n, &buf),
                            _ => break,
                        }
                    }
                    break;
                }
            }
        }
        data
    });
    Ok((task, done_tx))
}

/// The stdio FIFO paths of an exec (empty: not wanted).
#[derive(Debug, Default)]
pub(super) struct ExecPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
}

/// A fresh exec id.
pub(super) fn new_exec_id() -> String {
    format!("exec-{}", hex::encode(rand_bytes()))
}

/// A few random bytes for an exec id.
fn rand_bytes() -> [u8; 8] {
    let mut bytes = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_err()
    {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes = (nanos as u64).to_le_bytes();
    }
    bytes
}
