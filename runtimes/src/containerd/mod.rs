//! The containerd backend: containers run by containerd through its own gRPC API
//! (`containerd-client`; never its CRI plugin), one runc shim v2 task per container,
//! in pods berth makes itself exactly as for youki ([`Sandboxes`]: pinned namespaces,
//! CNI, `/etc` files, `/dev/shm`, cgroup parent), so pod networking, hostPorts and
//! `PodSandboxStatus` behave the same on both backends.
//!
//! Images are berth's: a container's rootfs is an overlay of berth's unpacked layers,
//! mounted by berth and handed to containerd as the spec's `root.path`, so no image is
//! stored twice and containerd's content store and snapshotters stay empty. Logs go
//! through a `binary://` logger (this binary, `berth log-shim`, started by the shim):
//! it writes the CRI log format and keeps running while berth or containerd is down.
//! Everything berth makes in containerd lives in its own namespace (`berth` by
//! default), so other tenants' containers are never seen or touched.
//!
//! One file per verb: `create`, `start`, `stop`, `remove`, `status`, `exec`, `stats`,
//! `pod` (the pod verbs over [`Sandboxes`]); `logger` is the log shim; `records` what
//! berth keeps per container; `connect` the channel.

pub mod connect;
mod create;
mod exec;
pub mod logger;
mod pod;
mod records;
mod remove;
mod runc;
mod start;
mod stats;
mod status;
mod stop;
mod stream;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::version_client::VersionClient;
use tonic::transport::Channel;

use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::image::ImageStore;
use crate::runtime::Runtime;
use crate::types::{
    AttachRequest, ContainerSpec, ContainerStats, ContainerStatus, ExecOutput, ExecRequest,
    ExecStreamRequest, Features, FsUsage, ImageInfo, Inspection, PortStream, PullRequest,
    SandboxSpec, SandboxStats, SandboxStatus, StreamSession,
};
use crate::youki::stats::Depth;
use crate::youki::{Sandboxes, YoukiConfig};
use records::Record;

/// The backend's name in pod records and messages.
pub const NAME: &str = "containerd";

/// How the backend reaches containerd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdConfig {
    /// containerd's gRPC socket.
    pub address: PathBuf,
    /// The containerd namespace berth's containers live in.
    pub namespace: String,
    /// The runtime (shim) containerd runs tasks with.
    pub runtime: String,
    /// The runc the runc shim runs (a name looked up in `PATH`, or a path).
    pub runc: PathBuf,
}

/// The longest a single containerd call may take (StopContainer's grace periods and
/// exec waits are separate): kubelet's own default runtime request timeout, so berth
/// does not give up on work (a task created while a loaded containerd makes a
/// thousand, which took over 60 s here) that kubelet still waits for.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// The containerd backend: the `Runtime` trait's table of contents over [`Containerd`].
pub struct ContainerdRuntime {
    inner: Arc<Containerd>,
}

/// The backend's state, shared by the verbs.
pub struct Containerd {
    config: ContainerdConfig,
    /// `config.namespace` as the header every call carries.
    namespace: tonic::metadata::AsciiMetadataValue,
    channel: Channel,
    sandboxes: Sandboxes,
    /// This binary: the shims start it as the log shim.
    exe: PathBuf,
    /// runc's state directory for berth's tasks (below berth's run dir).
    runc_root: PathBuf,
    /// The runc the shim is told to run (absolute), when it was found.
    runc: Option<PathBuf>,
    /// Whether that runc makes bind mounts read-only recursively (`rro`) on this
    /// kernel.
    recursive_read_only: bool,
    /// Whether this kernel has the user namespaces berth's pods are given.
    user_namespaces: bool,
    records: Mutex<BTreeMap<ContainerId, Record>>,
    /// Output FIFOs berth holds open from a task's create to its start.
    held: Mutex<HashMap<ContainerId, Vec<std::fs::File>>>,
    locks: Mutex<HashMap<ContainerId, Arc<tokio::sync::Mutex<()>>>>,
}

/// The id of `id`'s container and task in containerd. containerd takes ids of at most
/// 76 characters matching `^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$`; berth's own key is
/// used when it is one (readable in `ctr`), its SHA-256 otherwise. The CRI id is also
/// on the container as a label.
pub fn object_id(id: &ContainerId) -> String {
    let k = crate::youki::layout::key(id);
    let valid = k.len() <= 76
        && k.split(['.', '_', '-'])
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric()));
    if valid {
        k
    } else {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(k.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl ContainerdRuntime {
    /// Opens the backend: its pods (recovered as youki recovers its own, under
    /// `pods.state_dir`) and its container records. containerd itself is dialled
    /// lazily: a containerd that is down makes this backend unready, not berth.
    pub async fn open(
        images: Arc<ImageStore>,
        pods: YoukiConfig,
        config: ContainerdConfig,
        exe: PathBuf,
    ) -> Result<Self> {
        let namespace = connect::namespace_header(&config.namespace)?;
        let channel = connect::connect_lazy(&config.address)?;
        let runc_root = pods.run_dir.join("runc");
        let runc = runc::find(&config.runc);
        let recursive_read_only = crate::youki::features::has_mount_setattr()
            && runc.as_deref().is_some_and(runc::has_recursive_read_only);
        let user_namespaces = crate::youki::features::has_user_namespaces();
        let sandboxes = Sandboxes::open(images, pods).await?;
        let records = sandboxes
            .container_dirs()?
            .into_iter()
            .filter_map(|dir| match Record::load(&dir) {
                Ok(record) => record.map(|r| (r.id.clone(), r)),
                Err(e) => {
                    tracing::warn!(error = %e, "containerd: skipping an unreadable record");
                    None
                }
            })
            .collect();
        let inner = Arc::new(Containerd {
            config,
            namespace,
            channel,
            sandboxes,
            exe,
            runc_root,
            runc,
            recursive_read_only,
            user_namespaces,
            records: Mutex::new(records),
            held: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
        });
        inner.recover().await;
        Ok(ContainerdRuntime { inner })
    }

    /// Runs an image store call on the blocking pool.
    async fn images<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ImageStore) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let images = self.inner.sandboxes.images().clone();
        blocking(move || f(&images)).await
    }

    /// Whether containerd answers (its version), for `Status`.
    pub async fn check(&self) -> Result<String> {
        self.inner.version().await
    }
}

impl Containerd {
    fn containers(&self) -> ContainersClient<Channel> {
        ContainersClient::new(self.channel.clone())
    }

    fn tasks(&self) -> TasksClient<Channel> {
        TasksClient::new(self.channel.clone())
    }

    /// `message` in berth's containerd namespace, with the call deadline.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert(connect::NAMESPACE_HEADER, self.namespace.clone());
        request.set_timeout(CALL_TIMEOUT);
        request
    }

    /// containerd's version, or why it cannot be reached.
    async fn version(&self) -> Result<String> {
        let mut client = VersionClient::new(self.channel.clone());
        let mut request = tonic::Request::new(());
        request.set_timeout(Duration::from_secs(5));
        let reply = client
            .version(request)
            .await
            .map_err(|s| self.fail("Version", &s))?;
        Ok(reply.into_inner().version)
    }

    /// A containerd refusal as berth's error: its code kept, an unreachable containerd
    /// named by address.
    fn fail(&self, what: impl Into<String>, status: &tonic::Status) -> Error {
        let what = what.into();
        let message = format!("{what}: {}", status.message());
        // A dropped connection (containerd killed mid-call) surfaces from tonic as
        // Unknown "transport error"; it is as unreachable as a refused one.
        let dropped = status.code() == tonic::Code::Unknown
            && status.message().starts_with("transport error");
        match status.code() {
            _ if timed_out(status) => Error::DeadlineExceeded {
                operation: what,
                after: CALL_TIMEOUT,
            },
            _ if dropped => Error::Unavailable {
                service: format!("containerd at {}", self.config.address.display()),
                message,
            },
            tonic::Code::Unavailable => Error::Unavailable {
                service: format!("containerd at {}", self.config.address.display()),
                message,
            },
            tonic::Code::NotFound => Error::NotFound {
                kind: "containerd object",
                id: message,
            },
            tonic::Code::AlreadyExists => Error::AlreadyExists {
                kind: "containerd object",
                id: message,
            },
            tonic::Code::FailedPrecondition => Error::FailedPrecondition(message),
            tonic::Code::InvalidArgument => Error::InvalidSpec(message),
            tonic::Code::DeadlineExceeded => Error::DeadlineExceeded {
                operation: what,
                after: CALL_TIMEOUT,
            },
            _ => Error::internal(NAME, what, status.clone()),
        }
    }

    /// Finishes what a crash cut short: a container recorded as being created is
    /// undone (kubelet retries the create), one being removed is removed. When
    /// containerd cannot be reached now, that waits for the container's (or its
    /// pod's) removal.
    async fn recover(&self) {
        let unfinished: Vec<ContainerId> = self
            .index()
            .values()
            .filter(|r| matches!(r.phase, records::Phase::Creating | records::Phase::Removing))
            .map(|r| r.id.clone())
            .collect();
        for id in unfinished {
            if let Err(e) = self.undo_create(&id).await {
                tracing::warn!(container = %id, error = %e, "containerd: finishing a cut-short create or remove");
            }
        }
    }

    fn index(&self) -> MutexGuard<'_, BTreeMap<ContainerId, Record>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The output FIFOs held open per container.
    fn held(&self) -> MutexGuard<'_, HashMap<ContainerId, Vec<std::fs::File>>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The record of `id`, or `NotFound` (also while a removal finishes).
    fn record(&self, id: &ContainerId) -> Result<Record> {
        self.index()
            .get(id)
            .filter(|r| r.phase != records::Phase::Removing)
            .cloned()
            .ok_or_else(|| Error::not_found("container", id))
    }

    /// Saves `record` to disk and to the index.
    fn save(&self, record: &Record) -> Result<()> {
        record.save(&self.sandboxes.container_dir(&record.id))?;
        self.index().insert(record.id.clone(), record.clone());
        Ok(())
    }

    /// The containers of the pod `pod`, those still being removed among them.
    fn containers_of(&self, pod: &ContainerId) -> Vec<Record> {
        self.index()
            .values()
            .filter(|r| &r.pod == pod)
            .cloned()
            .collect()
    }

    /// The lock serialising verbs on one container.
    async fn lock(&self, id: &ContainerId) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.clone())
            .or_default()
            .clone();
        lock.lock_owned().await
    }
}

/// Runs `f` on tokio's blocking pool (file systems, mounts).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    // In the caller's span: its lines name the CRI call's pod and container.
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(|e| Error::internal(NAME, "a blocking task failed", e))?
}

#[async_trait]
impl Runtime for ContainerdRuntime {
    fn name(&self) -> &str {
        NAME
    }

    fn runs_os(&self, os: &str) -> bool {
        os == "linux"
    }

    fn features(&self) -> Features {
        // The user is resolved by berth (as for youki) into the spec runc applies;
        // pod user namespaces are berth's (pinned with the sandbox, rootfs owners
        // remapped), runc joins them. Recursive read-only mounts are runc's
        // (`rro`, mount_setattr): offered when the runc the shim runs lists them.
        Features {
            supplemental_groups_policy: true,
            user_namespaces: self.inner.user_namespaces,
            recursive_read_only_mounts: self.inner.recursive_read_only,
        }
    }

    async fn ready(&self) -> Result<()> {
        self.inner.version().await.map(drop)
    }

    async fn pull_image(&self, request: &PullRequest) -> Result<ImageInfo> {
        self.inner.sandboxes.images().pull(request).await
    }

    async fn image_status(&self, reference: &str) -> Result<Option<ImageInfo>> {
        let reference = reference.to_string();
        self.images(move |s| s.status(&reference)).await
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>> {
        self.images(ImageStore::list).await
    }

    async fn remove_image(&self, reference: &str) -> Result<()> {
        let reference = reference.to_string();
        self.images(move |s| s.remove(&reference)).await
    }

    async fn image_fs_info(&self) -> Result<Vec<FsUsage>> {
        // The image store is shared with youki, which reports it: once, so that
        // kubelet's image GC does not count it twice.
        Ok(Vec::new())
    }

    async fn run_pod_sandbox(&self, id: &ContainerId, spec: &SandboxSpec) -> Result<SandboxStatus> {
        self.inner.run_pod(id, spec).await
    }

    async fn pod_sandbox_status(&self, id: &ContainerId) -> Result<SandboxStatus> {
        self.inner.sandboxes.status(id).await
    }

    async fn pod_sandbox_stats(&self, id: &ContainerId) -> Result<SandboxStats> {
        self.inner.sandboxes.stats(id, Depth::Stats).await
    }

    async fn pod_sandbox_metrics(&self, id: &ContainerId) -> Result<SandboxStats> {
        self.inner.sandboxes.stats(id, Depth::Metrics).await
    }

    /// A pod as youki made it (its supervisor, cgroup and netns); a container's
    /// cgroup and its pod's netns (the pid of its containerd shim is not known here).
    async fn inspect(&self, id: &ContainerId) -> Result<Inspection> {
        if self.inner.sandboxes.has_pod(id) {
            return self.inner.sandboxes.inspect(id).await;
        }
        let record = self.inner.record(id)?;
        let pod = self.inner.sandboxes.inspect(&record.pod).await?;
        Ok(Inspection {
            supervisor_pid: None,
            cgroup_path: (!record.cgroup.is_empty()).then_some(record.cgroup),
            netns_path: pod.netns_path,
        })
    }

    async fn stop_pod_sandbox(&self, id: &ContainerId) -> Result<()> {
        self.inner.stop_pod(id).await
    }

    async fn remove_pod_sandbox(&self, id: &ContainerId) -> Result<()> {
        self.inner.remove_pod(id).await
    }

    /// The pod is youki's (its cgroup the parent of the containers' runc cgroups), so
    /// youki's resize applies as is.
    async fn update_pod_sandbox_resources(
        &self,
        id: &ContainerId,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        self.inner.sandboxes.update_resources(id, resources).await
    }

    async fn create_container(
        &self,
        sandbox: &ContainerId,
        id: &ContainerId,
        spec: &ContainerSpec,
    ) -> Result<()> {
        self.inner.create_container(sandbox, id, spec).await
    }

    async fn start_container(&self, id: &ContainerId) -> Result<()> {
        self.inner.start_container(id).await
    }

    async fn stop_container(&self, id: &ContainerId, timeout: Duration) -> Result<()> {
        self.inner.stop_container(id, timeout).await
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<()> {
        Containerd::remove_container(&self.inner, id).await
    }

    async fn container_status(&self, id: &ContainerId) -> Result<ContainerStatus> {
        self.inner.container_status(id).await
    }

    async fn update_container_resources(
        &self,
        id: &ContainerId,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        self.inner.update_resources(id, resources).await
    }

    async fn reopen_container_log(&self, id: &ContainerId) -> Result<()> {
        self.inner.reopen_log(id).await
    }

    async fn exec_sync(&self, id: &ContainerId, request: &ExecRequest) -> Result<ExecOutput> {
        self.inner.exec_sync(id, request).await
    }

    async fn container_stats(&self, id: &ContainerId) -> Result<ContainerStats> {
        self.inner.container_stats(id, Depth::Stats).await
    }

    async fn container_metrics(&self, id: &ContainerId) -> Result<ContainerStats> {
        self.inner.container_stats(id, Depth::Metrics).await
    }

    async fn exec(&self, id: &ContainerId, request: &ExecStreamRequest) -> Result<StreamSession> {
        self.inner.exec_stream(id, request).await
    }

    async fn attach(&self, id: &ContainerId, request: &AttachRequest) -> Result<StreamSession> {
        self.inner.attach_stream(id, request).await
    }

    async fn port_forward(&self, sandbox: &ContainerId, port: u16) -> Result<PortStream> {
        self.inner.sandboxes.port_forward(sandbox, port).await
    }
}

/// Whether `status` is the client's own deadline ([`CALL_TIMEOUT`]) expiring: tonic
/// reports it as Cancelled "Timeout expired", not as DEADLINE_EXCEEDED.
fn timed_out(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Cancelled
        && status.message() == tonic::TimeoutExpired(()).to_string()
}

#[cfg(test)]
mod tests {
    use super::{object_id, timed_out};
    use crate::id::ContainerId;

    /// containerd's identifier rule.
    fn accepted(s: &str) -> bool {
        s.len() <= 76
            && s.split(['.', '_', '-'])
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric()))
    }

    #[test]
    fn object_ids_are_what_containerd_accepts_and_distinct() {
        let ids = [
            ContainerId::new("web", "app", 0, "n1").unwrap(),
            ContainerId::new("on-containerd.default", "main", 0, "e2e-1").unwrap(),
            ContainerId::new("on-containerd.default", "main", 1, "e2e-1").unwrap(),
            ContainerId::new("x".repeat(100), "main", 0, "n1").unwrap(),
        ];
        let mapped: Vec<String> = ids.iter().map(object_id).collect();
        for m in &mapped {
            assert!(accepted(m), "{m}");
        }
        // A readable id stays readable in `ctr`.
        assert_eq!(mapped[0], "web-app-0-on-n1");
        let mut unique = mapped.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), mapped.len(), "{mapped:?}");
    }

    #[tokio::test]
    async fn the_clients_own_deadline_is_told_from_a_cancellation() {
        // A real call that outlives its deadline: a server that accepts and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _held = tokio::spawn(async move {
            let mut kept = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                kept.push(conn);
            }
        });
        let channel = tonic::transport::Endpoint::try_from(format!("http://{addr}"))
            .unwrap()
            .connect_lazy();
        let mut client = super::VersionClient::new(channel);
        let mut request = tonic::Request::new(());
        request.set_timeout(std::time::Duration::from_millis(50));
        let status = client.version(request).await.unwrap_err();
        assert!(timed_out(&status), "{status:?}");
        assert!(!timed_out(&tonic::Status::cancelled(
            "the caller went away"
        )));
    }
}
