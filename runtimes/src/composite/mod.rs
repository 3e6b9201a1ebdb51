//! `CompositeRuntime`: routes each pod to one backend and keeps that choice for the
//! pod's whole life.
//!
//! - **Dispatch** is decided once per pod sandbox, at `run_pod_sandbox`, with this
//!   precedence: the CRI `runtime_handler` > the pod annotation `berth.dev/isolation` >
//!   the OS the workload needs (the image's OS, cached at pull, else the pod config's
//!   OS) > the primary backend. Every container of the pod goes where its sandbox went.
//! - **The caller keeps the routes.** The composite holds them in memory only: the
//!   agent asks [`CompositeRuntime::choose`] for a pod's backend, records it with the
//!   pod before the backend is called, and hands every route back at start-up
//!   ([`CompositeRuntime::with_routes`]), so a restarted berth routes each call to the
//!   same backend without the composite keeping a store of its own.
//! - A workload no configured backend can run (an OS nobody here serves, an unknown
//!   runtime handler or isolation) is refused with [`Error::RouteToPeer`], so the
//!   scheduler places it on a capable peer instead of this node failing it later.
//! - **Image operations fan out** to every backend: we cannot know which backend will
//!   run a pulled image. A pull fails only when no backend could pull it; a list or a
//!   status lookup fails only when every backend failed.

mod dispatch;
#[cfg(test)]
mod feature_tests;
mod images;
#[cfg(test)]
mod stream_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use async_trait::async_trait;
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::runtime::Runtime;
use crate::types::{AttachRequest, ExecStreamRequest, PortStream, StreamSession};
use crate::types::{
    ContainerSpec, ContainerState, ContainerStats, ContainerStatus, ExecOutput, ExecRequest,
    Features, FsUsage, ImageInfo, Inspection, PullRequest, SandboxSpec, SandboxStats,
    SandboxStatus,
};

pub use dispatch::ISOLATION_ANNOTATION;

/// Routes pods to a primary backend, an optional delegate, or a backend registered
/// under a runtime-handler name. See the module documentation for the rules.
pub struct CompositeRuntime {
    primary: Arc<dyn Runtime>,
    delegate: Option<Arc<dyn Runtime>>,
    /// Runtime handler name → backend. The default handler `""` is the primary.
    handlers: BTreeMap<String, Arc<dyn Runtime>>,
    /// Which backend (by name) owns each sandbox and container.
    dispatch: RwLock<HashMap<ContainerId, String>>,
    /// Image reference or id → the image's OS, filled from every pull and status.
    image_os: RwLock<HashMap<String, String>>,
}

impl CompositeRuntime {
    /// A composite over `primary` that has routed nothing yet.
    pub fn new(primary: Arc<dyn Runtime>) -> Self {
        Self {
            primary,
            delegate: None,
            handlers: BTreeMap::new(),
            dispatch: RwLock::new(HashMap::new()),
            image_os: RwLock::new(HashMap::new()),
        }
    }

    /// Restores the routes (ContainerId → backend name) a previous run chose, as the
    /// caller recorded them.
    pub fn with_routes(self, routes: impl IntoIterator<Item = (ContainerId, String)>) -> Self {
        write(&self.dispatch).extend(routes);
        self
    }

    /// Chooses the backend for the pod `id` (see the module documentation for the
    /// precedence), routes `id` to it and returns its name, for the caller to record
    /// before [`Runtime::run_pod_sandbox`] runs the pod there. A pod this node cannot
    /// run is [`Error::RouteToPeer`]. Undo a choice with `remove_pod_sandbox`.
    pub async fn choose(&self, id: &ContainerId, spec: &SandboxSpec) -> Result<String> {
        let backend = self.select(id, spec).await?;
        self.remember(id, backend.name());
        Ok(backend.name().to_string())
    }

    /// Adds the delegate: the backend for workloads whose OS the primary does not run
    /// (a WSL2 VM running Linux pods for a Windows node).
    pub fn with_delegate(mut self, delegate: Arc<dyn Runtime>) -> Self {
        self.delegate = Some(delegate);
        self
    }

    /// Serves the CRI runtime handler `name` with `backend`.
    pub fn with_handler(mut self, name: impl Into<String>, backend: Arc<dyn Runtime>) -> Self {
        self.handlers.insert(name.into(), backend);
        self
    }

    /// The runtime handlers this node serves, the default `""` first, for `Status`.
    pub fn runtime_handlers(&self) -> Vec<String> {
        std::iter::once(String::new())
            .chain(self.handlers.keys().filter(|h| !h.is_empty()).cloned())
            .collect()
    }

    /// The features of the backend serving the runtime handler `name` (the primary for
    /// the default `""`); `None` for a handler this node does not serve.
    pub fn handler_features(&self, name: &str) -> Option<Features> {
        match self.handlers.get(name) {
            Some(backend) => Some(backend.features()),
            None if name.is_empty() => Some(self.primary.features()),
            None => None,
        }
    }

    /// Whether the backend of each runtime handler besides the default can serve now.
    /// A handler of the primary is left out: its readiness is the runtime's own.
    pub async fn handler_readiness(&self) -> Vec<(String, Result<()>)> {
        let mut out = Vec::new();
        for (name, backend) in &self.handlers {
            if !name.is_empty() && backend.name() != self.primary.name() {
                out.push((name.clone(), backend.ready().await));
            }
        }
        out
    }

    /// The name of the backend that owns `id`, if it was dispatched.
    pub fn backend_of(&self, id: &ContainerId) -> Option<String> {
        read(&self.dispatch).get(id).cloned()
    }

    /// Every distinct backend, primary first, then the delegate, then handlers' backends.
    fn backends(&self) -> Vec<&Arc<dyn Runtime>> {
        let mut out: Vec<&Arc<dyn Runtime>> = vec![&self.primary];
        for backend in self.delegate.iter().chain(self.handlers.values()) {
            if !out.iter().any(|b| b.name() == backend.name()) {
                out.push(backend);
            }
        }
        out
    }

    fn backend_named(&self, name: &str) -> Option<&Arc<dyn Runtime>> {
        self.backends().into_iter().find(|b| b.name() == name)
    }

    /// The backend that owns `id`; `NotFound` when `id` was never dispatched.
    fn owner(&self, id: &ContainerId) -> Result<Arc<dyn Runtime>> {
        let kind = if id.is_sandbox() {
            "pod sandbox"
        } else {
            "container"
        };
        let name = self
            .backend_of(id)
            .ok_or_else(|| Error::not_found(kind, id))?;
        // The node's config changed under the object: the node's to fix (or the
        // object's to remove), not an internal failure.
        self.backend_named(&name).cloned().ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "composite: {kind} {id} is recorded on backend `{name}`, which this node no longer configures"
            ))
        })
    }

    /// Routes `id` to `backend`.
    fn remember(&self, id: &ContainerId, backend: &str) {
        write(&self.dispatch).insert(id.clone(), backend.to_string());
    }

    /// Drops the route of `id`.
    fn forget(&self, id: &ContainerId) {
        write(&self.dispatch).remove(id);
    }

    /// Runs a teardown verb on the owner of `id`; an undispatched `id` has nothing to
    /// tear down, so that succeeds (teardown is idempotent).
    async fn teardown<'a, F, Fut>(
        &'a self,
        id: &'a ContainerId,
        verb: F,
    ) -> Result<Option<Arc<dyn Runtime>>>
    where
        F: FnOnce(Arc<dyn Runtime>) -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        match self.owner(id) {
            Ok(backend) => {
                verb(backend.clone()).await?;
                Ok(Some(backend))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The span of one call into `backend`, a child of the CRI call's: the one place every
/// backend call passes, so each backend is traced without instrumenting it. Debug
/// level: logs at `info` do not carry it, and with no exporter it costs nothing.
pub(crate) fn traced(
    backend: &Arc<dyn Runtime>,
    method: &'static str,
    id: Option<&ContainerId>,
) -> tracing::Span {
    tracing::debug_span!(
        "backend",
        otel.name = %format_args!("{} {method}", backend.name()),
        backend = backend.name(),
        berth_id = id.map(tracing::field::display),
    )
}

/// A poisoned lock only means another thread panicked mid-update of a plain map; the
/// map itself is still usable.
fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[async_trait]
impl Runtime for CompositeRuntime {
    fn name(&self) -> &str {
        "composite"
    }

    fn runs_os(&self, os: &str) -> bool {
        self.backends().iter().any(|b| b.runs_os(os))
    }

    /// What every backend offers: a pod may land on any of them (by handler, isolation
    /// or OS), so a node-wide feature holds only if it holds for all.
    fn features(&self) -> Features {
        self.backends()
            .iter()
            .fold(Features::all(), |all, b| all.common(b.features()))
    }

    async fn pull_image(&self, request: &PullRequest) -> Result<ImageInfo> {
        self.fan_out_pull(request).await
    }

    async fn image_status(&self, reference: &str) -> Result<Option<ImageInfo>> {
        self.fan_out_status(reference).await
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>> {
        self.fan_out_list().await
    }

    async fn remove_image(&self, reference: &str) -> Result<()> {
        self.fan_out_remove(reference).await
    }

    async fn image_fs_info(&self) -> Result<Vec<FsUsage>> {
        self.fan_out_fs_info().await
    }

    /// Runs the pod where [`CompositeRuntime::choose`] routed it, choosing now when
    /// nobody did.
    async fn run_pod_sandbox(&self, id: &ContainerId, spec: &SandboxSpec) -> Result<SandboxStatus> {
        let backend = match self.backend_of(id) {
            Some(_) => self.owner(id)?,
            None => {
                let backend = self.select(id, spec).await?;
                self.remember(id, backend.name());
                backend
            }
        };
        let span = traced(&backend, "RunPodSandbox", Some(id));
        match backend.run_pod_sandbox(id, spec).instrument(span).await {
            Ok(status) => Ok(status),
            Err(e) => {
                // The backend cleaned up after itself; a route to nothing would only
                // send later calls to the wrong place.
                self.forget(id);
                Err(e)
            }
        }
    }

    async fn pod_sandbox_status(&self, id: &ContainerId) -> Result<SandboxStatus> {
        let backend = self.owner(id)?;
        let span = traced(&backend, "PodSandboxStatus", Some(id));
        backend.pod_sandbox_status(id).instrument(span).await
    }

    async fn pod_sandbox_stats(&self, id: &ContainerId) -> Result<SandboxStats> {
        let backend = self.owner(id)?;
        let span = traced(&backend, "PodSandboxStats", Some(id));
        backend.pod_sandbox_stats(id).instrument(span).await
    }

    async fn pod_sandbox_metrics(&self, id: &ContainerId) -> Result<SandboxStats> {
        let backend = self.owner(id)?;
        let span = traced(&backend, "PodSandboxMetrics", Some(id));
        backend.pod_sandbox_metrics(id).instrument(span).await
    }

    async fn stop_pod_sandbox(&self, id: &ContainerId) -> Result<()> {
        self.teardown(id, |b| {
            let span = traced(&b, "StopPodSandbox", Some(id));
            async move { b.stop_pod_sandbox(id).instrument(span).await }
        })
        .await?;
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &ContainerId) -> Result<()> {
        if self
            .teardown(id, |b| {
                let span = traced(&b, "RemovePodSandbox", Some(id));
                async move { b.remove_pod_sandbox(id).instrument(span).await }
            })
            .await?
            .is_some()
        {
            self.forget(id);
        }
        Ok(())
    }

    async fn create_container(
        &self,
        sandbox: &ContainerId,
        id: &ContainerId,
        spec: &ContainerSpec,
    ) -> Result<()> {
        let backend = self.owner(sandbox)?;
        self.check_image_os(id, &backend, &spec.image).await?;
        self.remember(id, backend.name());
        let span = traced(&backend, "CreateContainer", Some(id));
        if let Err(e) = backend
            .create_container(sandbox, id, spec)
            .instrument(span)
            .await
        {
            self.forget(id);
            return Err(e);
        }
        Ok(())
    }

    async fn start_container(&self, id: &ContainerId) -> Result<()> {
        let backend = self.owner(id)?;
        let span = traced(&backend, "StartContainer", Some(id));
        backend.start_container(id).instrument(span).await
    }

    async fn stop_container(&self, id: &ContainerId, timeout: Duration) -> Result<()> {
        self.teardown(id, |b| {
            let span = traced(&b, "StopContainer", Some(id));
            async move { b.stop_container(id, timeout).instrument(span).await }
        })
        .await?;
        Ok(())
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<()> {
        if self
            .teardown(id, |b| {
                let span = traced(&b, "RemoveContainer", Some(id));
                async move { b.remove_container(id).instrument(span).await }
            })
            .await?
            .is_some()
        {
            self.forget(id);
        }
        Ok(())
    }

    async fn container_status(&self, id: &ContainerId) -> Result<ContainerStatus> {
        let backend = self.owner(id)?;
        let span = traced(&backend, "ContainerStatus", Some(id));
        backend.container_status(id).instrument(span).await
    }

    async fn inspect(&self, id: &ContainerId) -> Result<Inspection> {
        self.owner(id)?.inspect(id).await
    }

    /// The sum of the backends' generations (each only grows), known when each
    /// backend's is.
    fn state_generation(&self) -> Option<u64> {
        self.backends()
            .iter()
            .try_fold(0u64, |sum, b| Some(sum.wrapping_add(b.state_generation()?)))
    }

    /// Each backend is asked once, for its own containers.
    async fn container_states(&self, ids: &[ContainerId]) -> Vec<Result<ContainerState>> {
        let mut states: Vec<Option<Result<ContainerState>>> = ids.iter().map(|_| None).collect();
        let mut groups: Vec<(Arc<dyn Runtime>, Vec<usize>)> = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            match self.owner(id) {
                Ok(backend) => match groups.iter_mut().find(|(b, _)| Arc::ptr_eq(b, &backend)) {
                    Some((_, members)) => members.push(i),
                    None => groups.push((backend, vec![i])),
                },
                Err(e) => states[i] = Some(Err(e)),
            }
        }
        let asked = groups.iter().map(|(backend, members)| {
            let mine: Vec<ContainerId> = members.iter().map(|&i| ids[i].clone()).collect();
            async move { backend.container_states(&mine).await }
        });
        for ((_, members), answers) in groups.iter().zip(futures::future::join_all(asked).await) {
            for (&i, answer) in members.iter().zip(answers) {
                states[i] = Some(answer);
            }
        }
        states
            .into_iter()
            .zip(ids)
            .map(|(s, id)| s.unwrap_or_else(|| Err(Error::not_found("container", id))))
            .collect()
    }

    async fn update_container_resources(
        &self,
        id: &ContainerId,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        let backend = self.owner(id)?;
        let span = traced(&backend, "UpdateContainerResources", Some(id));
        backend
            .update_container_resources(id, resources)
            .instrument(span)
            .await
    }

    async fn update_pod_sandbox_resources(
        &self,
        id: &ContainerId,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        let backend = self.owner(id)?;
        let span = traced(&backend, "UpdatePodSandboxResources", Some(id));
        backend
            .update_pod_sandbox_resources(id, resources)
            .instrument(span)
            .await
    }

    async fn reopen_container_log(&self, id: &ContainerId) -> Result<()> {
        let backend = self.owner(id)?;
        let span = traced(&backend, "ReopenContainerLog", Some(id));
        backend.reopen_container_log(id).instrument(span).await
    }

    async fn exec_sync(&self, id: &ContainerId, request: &ExecRequest) -> Result<ExecOutput> {
        let backend = self.owner(id)?;
        let span = traced(&backend, "ExecSync", Some(id));
        backend.exec_sync(id, request).instrument(span).await
    }

    async fn container_stats(&self, id: &ContainerId) -> Result<ContainerStats> {
        let backend = self.owner(id)?;
        let span = traced(&backend, "ContainerStats", Some(id));
        backend.container_stats(id).instrument(span).await
    }

    async fn container_metrics(&self, id: &ContainerId) -> Result<ContainerStats> {
        let backend = self.owner(id)?;
        let span = traced(&backend, "ContainerMetrics", Some(id));
        backend.container_metrics(id).instrument(span).await
    }

    async fn exec(&self, id: &ContainerId, request: &ExecStreamRequest) -> Result<StreamSession> {
        let backend = self.owner(id)?;
        let span = traced(&backend, "Exec", Some(id));
        backend.exec(id, request).instrument(span).await
    }

    async fn attach(&self, id: &ContainerId, request: &AttachRequest) -> Result<StreamSession> {
        let backend = self.owner(id)?;
        let span = traced(&backend, "Attach", Some(id));
        backend.attach(id, request).instrument(span).await
    }

    async fn port_forward(&self, sandbox: &ContainerId, port: u16) -> Result<PortStream> {
        let backend = self.owner(sandbox)?;
        let span = traced(&backend, "PortForward", Some(sandbox));
        backend.port_forward(sandbox, port).instrument(span).await
    }
}
