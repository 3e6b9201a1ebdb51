//! An in-memory [`Runtime`] for tests of dispatch logic (never a feature's "done").
//!
//! It holds a set of images it can "pull" (its registry), the images it has pulled,
//! and the sandboxes and containers it was asked to make; it records every call, and
//! can be told to fail an operation.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::runtime::Runtime;
use crate::types::{
    AttachRequest, ExecStreamRequest, PortStream, StdioRequest, StreamReader, StreamSession,
    StreamWriter,
};
use crate::types::{
    ContainerSpec, ContainerState, ContainerStatus, ExecOutput, ExecRequest, FsUsage, ImageInfo,
    PullRequest, SandboxSpec, SandboxState, SandboxStatus,
};

/// One call a [`MockRuntime`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The backend's name.
    pub backend: String,
    /// The trait method, e.g. `run_pod_sandbox`.
    pub operation: &'static str,
    /// The ContainerId or image reference it was about.
    pub target: String,
}

type Failure = Box<dyn Fn() -> Error + Send + Sync>;

#[derive(Default)]
struct State {
    registry: Vec<ImageInfo>,
    images: Vec<ImageInfo>,
    sandboxes: BTreeSet<ContainerId>,
    /// Container → (its sandbox, its state).
    containers: BTreeMap<ContainerId, (ContainerId, ContainerState)>,
    failures: HashMap<&'static str, Failure>,
}

/// A test backend named `name` that runs workloads of the given OSes.
#[derive(Clone)]
pub struct MockRuntime {
    name: String,
    os: Vec<String>,
    state: Arc<Mutex<State>>,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl MockRuntime {
    /// A backend called `name` that runs `os` workloads.
    pub fn new(name: &str, os: &[&str]) -> Self {
        Self {
            name: name.to_string(),
            os: os.iter().map(|s| s.to_string()).collect(),
            state: Arc::default(),
            calls: Arc::default(),
        }
    }

    /// Shares the call log with other mocks, so a test sees the order across backends.
    pub fn sharing_calls(mut self, other: &MockRuntime) -> Self {
        self.calls = other.calls.clone();
        self
    }

    /// Makes `image` pullable: its first repo tag, id and repo digests name it.
    pub fn with_registry_image(self, image: ImageInfo) -> Self {
        self.state().registry.push(image);
        self
    }

    /// Makes every later call of `operation` fail with what `error` builds.
    pub fn fail(&self, operation: &'static str, error: impl Fn() -> Error + Send + Sync + 'static) {
        self.state().failures.insert(operation, Box::new(error));
    }

    /// Every call received so far (by every mock sharing this log).
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The (backend, operation, target) of every call, for compact assertions.
    pub fn call_summary(&self) -> Vec<(String, &'static str, String)> {
        self.calls()
            .into_iter()
            .map(|c| (c.backend, c.operation, c.target))
            .collect()
    }

    /// True when this backend has pulled the image `id`.
    pub fn holds_image(&self, id: &str) -> bool {
        self.state().images.iter().any(|i| i.id == id)
    }

    /// True when this backend holds the sandbox `id`.
    pub fn holds_sandbox(&self, id: &ContainerId) -> bool {
        self.state().sandboxes.contains(id)
    }

    /// The state of the container `id`, when this backend holds it.
    pub fn container_state(&self, id: &ContainerId) -> Option<ContainerState> {
        self.state().containers.get(id).map(|(_, state)| *state)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Logs the call, then fails it if told to.
    fn enter(
        &self,
        operation: &'static str,
        target: impl ToString,
    ) -> Result<MutexGuard<'_, State>> {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Call {
                backend: self.name.clone(),
                operation,
                target: target.to_string(),
            });
        let state = self.state();
        match state.failures.get(operation) {
            Some(failure) => Err(failure()),
            None => Ok(state),
        }
    }
}

fn names(image: &ImageInfo, reference: &str) -> bool {
    image.id == reference
        || image.repo_tags.iter().any(|t| t == reference)
        || image.repo_digests.iter().any(|d| d == reference)
}

#[async_trait]
impl Runtime for MockRuntime {
    fn name(&self) -> &str {
        &self.name
    }

    fn runs_os(&self, os: &str) -> bool {
        self.os.iter().any(|o| o == os)
    }

    async fn pull_image(&self, request: &PullRequest) -> Result<ImageInfo> {
        let mut state = self.enter("pull_image", &request.reference)?;
        let image = state
            .registry
            .iter()
            .find(|i| names(i, &request.reference))
            .cloned()
            .ok_or_else(|| Error::not_found("image", &request.reference))?;
        if !self.runs_os(&image.config.os) {
            return Err(Error::WrongPlatform {
                image: request.reference.clone(),
                platform: image.platform(),
                backend: self.name.clone(),
                supported: self.os.join(", "),
            });
        }
        if !state.images.iter().any(|i| i.id == image.id) {
            state.images.push(image.clone());
        }
        Ok(image)
    }

    async fn image_status(&self, reference: &str) -> Result<Option<ImageInfo>> {
        let state = self.enter("image_status", reference)?;
        Ok(state.images.iter().find(|i| names(i, reference)).cloned())
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>> {
        Ok(self.enter("list_images", "")?.images.clone())
    }

    async fn remove_image(&self, reference: &str) -> Result<()> {
        self.enter("remove_image", reference)?
            .images
            .retain(|i| !names(i, reference));
        Ok(())
    }

    async fn image_fs_info(&self) -> Result<Vec<FsUsage>> {
        let state = self.enter("image_fs_info", "")?;
        Ok(vec![FsUsage {
            timestamp: SystemTime::now(),
            mountpoint: format!("/mock/{}", self.name).into(),
            used_bytes: state.images.iter().map(|i| i.size).sum(),
            inodes_used: state.images.len() as u64,
        }])
    }

    async fn run_pod_sandbox(
        &self,
        id: &ContainerId,
        _spec: &SandboxSpec,
    ) -> Result<SandboxStatus> {
        let mut state = self.enter("run_pod_sandbox", id)?;
        state.sandboxes.insert(id.clone());
        Ok(sandbox_status(state.sandboxes.len()))
    }

    async fn pod_sandbox_status(&self, id: &ContainerId) -> Result<SandboxStatus> {
        let state = self.enter("pod_sandbox_status", id)?;
        let index = state
            .sandboxes
            .iter()
            .position(|s| s == id)
            .ok_or_else(|| Error::not_found("pod sandbox", id))?;
        Ok(sandbox_status(index + 1))
    }

    async fn stop_pod_sandbox(&self, id: &ContainerId) -> Result<()> {
        let mut state = self.enter("stop_pod_sandbox", id)?;
        for (sandbox, container) in state.containers.values_mut() {
            if sandbox == id && *container == ContainerState::Running {
                *container = ContainerState::Exited;
            }
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &ContainerId) -> Result<()> {
        let mut state = self.enter("remove_pod_sandbox", id)?;
        state.sandboxes.remove(id);
        state.containers.retain(|_, (sandbox, _)| sandbox != id);
        Ok(())
    }

    async fn create_container(
        &self,
        sandbox: &ContainerId,
        id: &ContainerId,
        _spec: &ContainerSpec,
    ) -> Result<()> {
        let mut state = self.enter("create_container", id)?;
        if !state.sandboxes.contains(sandbox) {
            return Err(Error::not_found("pod sandbox", sandbox));
        }
        state
            .containers
            .insert(id.clone(), (sandbox.clone(), ContainerState::Created));
        Ok(())
    }

    async fn start_container(&self, id: &ContainerId) -> Result<()> {
        let mut state = self.enter("start_container", id)?;
        let (_, container) = state
            .containers
            .get_mut(id)
            .ok_or_else(|| Error::not_found("container", id))?;
        *container = ContainerState::Running;
        Ok(())
    }

    async fn stop_container(&self, id: &ContainerId, _timeout: Duration) -> Result<()> {
        if let Some((_, container)) = self.enter("stop_container", id)?.containers.get_mut(id) {
            *container = ContainerState::Exited;
        }
        Ok(())
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<()> {
        self.enter("remove_container", id)?.containers.remove(id);
        Ok(())
    }

    async fn container_status(&self, id: &ContainerId) -> Result<ContainerStatus> {
        let state = self.enter("container_status", id)?;
        let (_, container) = state
            .containers
            .get(id)
            .ok_or_else(|| Error::not_found("container", id))?;
        Ok(ContainerStatus {
            state: *container,
            ..Default::default()
        })
    }

    /// Echoes the command: stdout is the arguments joined by spaces.
    async fn exec_sync(&self, id: &ContainerId, request: &ExecRequest) -> Result<ExecOutput> {
        let state = self.enter("exec_sync", id)?;
        match state.containers.get(id) {
            Some((_, ContainerState::Running)) => Ok(ExecOutput {
                stdout: request.cmd.join(" ").into_bytes(),
                ..Default::default()
            }),
            Some(_) => Err(Error::FailedPrecondition(format!(
                "container {id} is not running"
            ))),
            None => Err(Error::not_found("container", id)),
        }
    }

    /// Echoes the command on stdout, like `exec_sync`, and exits 0.
    async fn exec(&self, id: &ContainerId, request: &ExecStreamRequest) -> Result<StreamSession> {
        let state = self.enter("exec", id)?;
        running(&state, id)?;
        Ok(echo_session(
            request.cmd.join(" ").into_bytes(),
            &request.stdio,
        ))
    }

    /// A session with nothing on stdout that ends with exit code 0.
    async fn attach(&self, id: &ContainerId, request: &AttachRequest) -> Result<StreamSession> {
        let state = self.enter("attach", id)?;
        running(&state, id)?;
        Ok(echo_session(Vec::new(), &request.stdio))
    }

    /// A connection that answers `port N` and discards what it is sent.
    async fn port_forward(&self, sandbox: &ContainerId, port: u16) -> Result<PortStream> {
        let state = self.enter("port_forward", sandbox)?;
        if !state.sandboxes.contains(sandbox) {
            return Err(Error::not_found("pod sandbox", sandbox));
        }
        let answer = std::io::Cursor::new(format!("port {port}\n").into_bytes());
        Ok(Box::new(tokio::io::join(answer, tokio::io::sink())))
    }
}

/// `Ok` when the container `id` runs; `NotFound` or `FailedPrecondition` otherwise.
fn running(state: &State, id: &ContainerId) -> Result<()> {
    match state.containers.get(id) {
        Some((_, ContainerState::Running)) => Ok(()),
        Some(_) => Err(Error::FailedPrecondition(format!(
            "container {id} is not running"
        ))),
        None => Err(Error::not_found("container", id)),
    }
}

/// A finished session: `stdout` as output, stdin discarded, exit code 0.
fn echo_session(stdout: Vec<u8>, stdio: &StdioRequest) -> StreamSession {
    StreamSession {
        stdin: stdio
            .stdin
            .then(|| Box::new(tokio::io::sink()) as StreamWriter),
        stdout: stdio
            .stdout
            .then(|| Box::new(std::io::Cursor::new(stdout)) as StreamReader),
        stderr: stdio
            .stderr
            .then(|| Box::new(tokio::io::empty()) as StreamReader),
        resize: None,
        done: Box::pin(async { Ok(0) }),
    }
}

/// The n-th sandbox's status: ready, with the address 10.88.0.n.
fn sandbox_status(n: usize) -> SandboxStatus {
    SandboxStatus {
        state: SandboxState::Ready,
        ips: vec![format!("10.88.0.{n}")],
        netns_path: None,
    }
}

/// A [`DispatchLog`](crate::composite::DispatchLog) in memory, shared by clones, so a
/// test can build a second composite from the first one's records (a "restart").
#[derive(Clone, Default)]
pub struct MemoryDispatchLog {
    records: Arc<Mutex<BTreeMap<ContainerId, String>>>,
}

impl MemoryDispatchLog {
    /// The records as they stand.
    pub fn records(&self) -> BTreeMap<ContainerId, String> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl crate::composite::DispatchLog for MemoryDispatchLog {
    fn load(&self) -> Result<Vec<(ContainerId, String)>> {
        Ok(self.records().into_iter().collect())
    }

    fn record(&self, id: &ContainerId, backend: &str) -> Result<()> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), backend.to_string());
        Ok(())
    }

    fn forget(&self, id: &ContainerId) -> Result<()> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        Ok(())
    }
}
