//! An in-memory [`Runtime`] for tests of dispatch logic (never a feature's "done").
//!
//! It holds a set of images it can "pull" (its registry), the images it has pulled,
//! and the sandboxes and containers it was asked to make; it records every call, and
//! can be told to fail an operation.

use std::collections::{BTreeMap, HashMap};
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
    ContainerSpec, ContainerState, ContainerStats, ContainerStatus, ExecOutput, ExecRequest,
    Features, FsUsage, ImageInfo, Inspection, MemoryStats, NetworkStats, PullRequest, ResolvedUser,
    SandboxSpec, SandboxState, SandboxStats, SandboxStatus,
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
    /// Sandbox → its state, in creation order of their ids.
    sandboxes: BTreeMap<ContainerId, SandboxState>,
    containers: BTreeMap<ContainerId, MockContainer>,
    /// Sandbox → the pod-level resources last applied to it.
    pod_resources: BTreeMap<ContainerId, oci_spec::runtime::LinuxResources>,
    /// The pid the next started container gets.
    next_pid: u32,
    failures: HashMap<&'static str, Failure>,
    /// The state generation, once asked to keep one (`keep_state_generation`).
    generation: Option<u64>,
}

/// A container the mock made.
struct MockContainer {
    sandbox: ContainerId,
    status: ContainerStatus,
    resources: Option<oci_spec::runtime::LinuxResources>,
}

/// The exit code a stopped mock container reports (killed by SIGKILL).
const STOPPED_EXIT_CODE: i32 = 137;

/// A test backend named `name` that runs workloads of the given OSes.
#[derive(Clone)]
pub struct MockRuntime {
    name: String,
    os: Vec<String>,
    features: Features,
    state: Arc<Mutex<State>>,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl MockRuntime {
    /// A backend called `name` that runs `os` workloads.
    pub fn new(name: &str, os: &[&str]) -> Self {
        Self {
            name: name.to_string(),
            os: os.iter().map(|s| s.to_string()).collect(),
            features: Features::default(),
            state: Arc::default(),
            calls: Arc::default(),
        }
    }

    /// Reports `features` (none by default).
    pub fn with_features(mut self, features: Features) -> Self {
        self.features = features;
        self
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
        self.state().sandboxes.contains_key(id)
    }

    /// The state of the sandbox `id`, when this backend holds it.
    pub fn sandbox_state(&self, id: &ContainerId) -> Option<SandboxState> {
        self.state().sandboxes.get(id).copied()
    }

    /// The state of the container `id`, when this backend holds it.
    pub fn container_state(&self, id: &ContainerId) -> Option<ContainerState> {
        self.state().containers.get(id).map(|c| c.status.state)
    }

    /// The resources last applied to the container `id`.
    pub fn container_resources(
        &self,
        id: &ContainerId,
    ) -> Option<oci_spec::runtime::LinuxResources> {
        self.state()
            .containers
            .get(id)
            .and_then(|c| c.resources.clone())
    }

    /// The pod-level resources last applied to the sandbox `id`.
    pub fn pod_resources(&self, id: &ContainerId) -> Option<oci_spec::runtime::LinuxResources> {
        self.state().pod_resources.get(id).cloned()
    }

    /// Makes the running container `id` exit with `code`, as if its process ended.
    pub fn exit_container(&self, id: &ContainerId, code: i32) {
        let mut state = self.state();
        if let Some(c) = state.containers.get_mut(id) {
            exit(&mut c.status, code);
        }
        state.generation = state.generation.map(|g| g + 1);
    }

    /// Reports a state generation (none by default) that moves with every verb that
    /// changes a container or sandbox and with every `exit_container`, as youki's.
    pub fn keep_state_generation(&self) {
        self.state().generation.get_or_insert(0);
    }

    /// Makes the sandbox `id` not ready, as if its namespaces were lost.
    pub fn lose_sandbox(&self, id: &ContainerId) {
        let mut state = self.state();
        state.sandboxes.remove(id);
        state.generation = state.generation.map(|g| g + 1);
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
        let mut state = self.state();
        // The change happens under this lock, which `state_generation` takes too.
        const CHANGES: [&str; 7] = [
            "run_pod_sandbox",
            "stop_pod_sandbox",
            "remove_pod_sandbox",
            "create_container",
            "start_container",
            "stop_container",
            "remove_container",
        ];
        if CHANGES.contains(&operation) {
            state.generation = state.generation.map(|g| g + 1);
        }
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

    fn state_generation(&self) -> Option<u64> {
        self.state().generation
    }

    fn runs_os(&self, os: &str) -> bool {
        self.os.iter().any(|o| o == os)
    }

    fn features(&self) -> Features {
        self.features
    }

    /// Ready unless `fail("ready", …)` said otherwise; not logged as a call, so the
    /// call log stays the verbs the composite forwarded.
    async fn ready(&self) -> Result<()> {
        match self.state().failures.get("ready") {
            Some(failure) => Err(failure()),
            None => Ok(()),
        }
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
        state.sandboxes.insert(id.clone(), SandboxState::Ready);
        Ok(sandbox_status(state.sandboxes.len(), SandboxState::Ready))
    }

    async fn pod_sandbox_status(&self, id: &ContainerId) -> Result<SandboxStatus> {
        let state = self.enter("pod_sandbox_status", id)?;
        let (index, (_, sandbox)) = state
            .sandboxes
            .iter()
            .enumerate()
            .find(|(_, (s, _))| *s == id)
            .ok_or_else(|| Error::not_found("pod sandbox", id))?;
        Ok(sandbox_status(index + 1, *sandbox))
    }

    /// Fixed numbers: 1 s of CPU and 1 MiB per container, 8 MiB more for the pod.
    async fn pod_sandbox_stats(&self, id: &ContainerId) -> Result<SandboxStats> {
        let state = self.enter("pod_sandbox_stats", id)?;
        if !state.sandboxes.contains_key(id) {
            return Err(Error::not_found("pod sandbox", id));
        }
        let running = state
            .containers
            .values()
            .filter(|c| c.sandbox == *id && c.status.state == ContainerState::Running)
            .count() as u64;
        Ok(SandboxStats {
            timestamp: SystemTime::now(),
            cpu_usage_ns: running * 1_000_000_000,
            memory: MemoryStats {
                working_set: (8 + running) << 20,
                usage: (9 + running) << 20,
                rss: running << 20,
                page_faults: 10,
                major_page_faults: 1,
            },
            processes: running,
            network: Some(NetworkStats {
                interface: "eth0".into(),
                rx_bytes: 100,
                rx_errors: 0,
                tx_bytes: 200,
                tx_errors: 0,
                ..Default::default()
            }),
            detail: Default::default(),
        })
    }

    async fn stop_pod_sandbox(&self, id: &ContainerId) -> Result<()> {
        let mut state = self.enter("stop_pod_sandbox", id)?;
        for container in state.containers.values_mut() {
            if container.sandbox == *id && container.status.state == ContainerState::Running {
                exit(&mut container.status, STOPPED_EXIT_CODE);
            }
        }
        if let Some(sandbox) = state.sandboxes.get_mut(id) {
            *sandbox = SandboxState::NotReady;
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &ContainerId) -> Result<()> {
        let mut state = self.enter("remove_pod_sandbox", id)?;
        state.sandboxes.remove(id);
        state.pod_resources.remove(id);
        state.containers.retain(|_, c| c.sandbox != *id);
        Ok(())
    }

    async fn update_pod_sandbox_resources(
        &self,
        id: &ContainerId,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        let mut state = self.enter("update_pod_sandbox_resources", id)?;
        if !state.sandboxes.contains_key(id) {
            return Err(Error::not_found("pod sandbox", id));
        }
        state.pod_resources.insert(id.clone(), resources.clone());
        Ok(())
    }

    async fn create_container(
        &self,
        sandbox: &ContainerId,
        id: &ContainerId,
        spec: &ContainerSpec,
    ) -> Result<()> {
        let mut state = self.enter("create_container", id)?;
        if state.sandboxes.get(sandbox) != Some(&SandboxState::Ready) {
            return Err(Error::not_found("pod sandbox", sandbox));
        }
        // The mock "resolves" users without an /etc/passwd: names are root.
        let user = ResolvedUser {
            uid: spec.user.uid.unwrap_or(0),
            gid: spec.user.gid.unwrap_or(0),
            supplemental_groups: spec.user.supplemental_groups.clone(),
        };
        let container = MockContainer {
            sandbox: sandbox.clone(),
            status: ContainerStatus {
                user: Some(user),
                ..Default::default()
            },
            resources: spec
                .oci
                .linux()
                .as_ref()
                .and_then(|l| l.resources().clone()),
        };
        state.containers.insert(id.clone(), container);
        Ok(())
    }

    async fn start_container(&self, id: &ContainerId) -> Result<()> {
        let mut state = self.enter("start_container", id)?;
        state.next_pid += 1;
        let pid = 1000 + state.next_pid;
        let container = state
            .containers
            .get_mut(id)
            .ok_or_else(|| Error::not_found("container", id))?;
        if container.status.state != ContainerState::Created {
            return Err(Error::FailedPrecondition(format!(
                "container {id} is {:?}, not created",
                container.status.state
            )));
        }
        container.status.state = ContainerState::Running;
        container.status.pid = Some(pid);
        container.status.started_at = Some(SystemTime::now());
        Ok(())
    }

    async fn stop_container(&self, id: &ContainerId, _timeout: Duration) -> Result<()> {
        if let Some(container) = self.enter("stop_container", id)?.containers.get_mut(id) {
            if container.status.state == ContainerState::Running {
                exit(&mut container.status, STOPPED_EXIT_CODE);
            }
        }
        Ok(())
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<()> {
        self.enter("remove_container", id)?.containers.remove(id);
        Ok(())
    }

    async fn container_status(&self, id: &ContainerId) -> Result<ContainerStatus> {
        let state = self.enter("container_status", id)?;
        state
            .containers
            .get(id)
            .map(|c| c.status.clone())
            .ok_or_else(|| Error::not_found("container", id))
    }

    /// A cgroup named after the id, and the pod's network namespace; no supervisor.
    /// Not recorded as a call: only verbose statuses ask.
    async fn inspect(&self, id: &ContainerId) -> Result<Inspection> {
        let state = self.state();
        let pod = match state.containers.get(id) {
            Some(c) => &c.sandbox,
            None if state.sandboxes.contains_key(id) => id,
            None => return Err(Error::not_found("container", id)),
        };
        let n = state.sandboxes.keys().position(|s| s == pod);
        Ok(Inspection {
            supervisor_pid: None,
            cgroup_path: Some(format!("/mock/{id}")),
            netns_path: n.and_then(|n| sandbox_status(n + 1, SandboxState::Ready).netns_path),
        })
    }

    async fn update_container_resources(
        &self,
        id: &ContainerId,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        let mut state = self.enter("update_container_resources", id)?;
        let container = state
            .containers
            .get_mut(id)
            .ok_or_else(|| Error::not_found("container", id))?;
        container.resources = Some(resources.clone());
        Ok(())
    }

    async fn reopen_container_log(&self, id: &ContainerId) -> Result<()> {
        let state = self.enter("reopen_container_log", id)?;
        match state.containers.get(id) {
            Some(c) if c.status.state == ContainerState::Running => Ok(()),
            Some(_) => Err(Error::FailedPrecondition(format!(
                "container {id} is not running"
            ))),
            None => Err(Error::not_found("container", id)),
        }
    }

    /// Echoes the command: stdout is the arguments joined by spaces.
    async fn exec_sync(&self, id: &ContainerId, request: &ExecRequest) -> Result<ExecOutput> {
        let state = self.enter("exec_sync", id)?;
        running(&state, id)?;
        Ok(ExecOutput {
            stdout: request.cmd.join(" ").into_bytes(),
            ..Default::default()
        })
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
        if !state.sandboxes.contains_key(sandbox) {
            return Err(Error::not_found("pod sandbox", sandbox));
        }
        let answer = std::io::Cursor::new(format!("port {port}\n").into_bytes());
        Ok(Box::new(tokio::io::join(answer, tokio::io::sink())))
    }

    /// Fixed numbers for a running container: 1 s of CPU, 1 MiB of memory, 4 KiB of
    /// writable layer.
    async fn container_stats(&self, id: &ContainerId) -> Result<ContainerStats> {
        let state = self.enter("container_stats", id)?;
        let container = state
            .containers
            .get(id)
            .ok_or_else(|| Error::not_found("container", id))?;
        if container.status.state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {id} is not running"
            )));
        }
        Ok(ContainerStats {
            timestamp: SystemTime::now(),
            cpu_usage_ns: 1_000_000_000,
            memory: MemoryStats {
                working_set: 1 << 20,
                usage: 2 << 20,
                rss: 1 << 19,
                page_faults: 5,
                major_page_faults: 0,
            },
            writable_layer: format!("/mock/{}/{id}/upper", self.name).into(),
            writable_layer_bytes: 4096,
            writable_layer_inodes: 3,
            detail: Default::default(),
        })
    }
}

/// `Ok` when the container `id` runs; `NotFound` or `FailedPrecondition` otherwise.
fn running(state: &State, id: &ContainerId) -> Result<()> {
    match state.containers.get(id).map(|c| c.status.state) {
        Some(ContainerState::Running) => Ok(()),
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

/// Marks a container exited with `code` now.
fn exit(status: &mut ContainerStatus, code: i32) {
    status.state = ContainerState::Exited;
    status.exit_code = code;
    status.pid = None;
    status.finished_at = Some(SystemTime::now());
}

/// The n-th sandbox's status, with the address 10.88.0.n.
fn sandbox_status(n: usize, state: SandboxState) -> SandboxStatus {
    SandboxStatus {
        state,
        ips: vec![format!("10.88.0.{n}")],
        netns_path: Some(format!("/run/mock/netns/{n}").into()),
    }
}
