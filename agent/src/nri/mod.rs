//! berth as an NRI runtime (Node Resource Interface, the plugin protocol containerd
//! and CRI-O serve): plugins connect to a unix socket, register, are configured and
//! synchronized with the pods and containers that exist, then hear of every pod and
//! container lifecycle event they subscribed to, in order; `CreateContainer`'s
//! answers adjust the container's OCI spec before it is created.
//!
//! - [`wire`]: the multiplexer and ttrpc framing.
//! - [`plugin`]: one plugin's connection (ttrpc client and server, timeouts).
//! - here: the socket, registration and synchronization, event dispatch and
//!   adjustments.
//!
//! Synchronization races no creation: every CRI verb that sends events holds
//! [`Nri::block`] (a shared lock) from its first record change to its last event; a
//! registering plugin takes the lock exclusively from its snapshot of the store until
//! it joins the plugins, so an object is either in its snapshot or its events.

mod adjust;
mod launch;
mod plugin;
pub mod wire;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use berth_proto::nri as api;
use serde::{Deserialize, Serialize};
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;

use crate::store::{ContainerRecord, Query, Record, SandboxRecord, Store};

pub use adjust::{Adjustment, Resources, Updates};
use plugin::Plugin;

/// The runtime name berth gives plugins in `Configure`.
const RUNTIME_NAME: &str = "berth";

/// The `nri` config section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NriConfig {
    /// Serve NRI; off by default (as containerd 1.x).
    pub enable: bool,
    /// The socket plugins connect to; default `/var/run/nri/nri.sock`.
    pub socket_path: PathBuf,
    /// How long a connected plugin has to register, in milliseconds; default 5000.
    pub plugin_registration_timeout_ms: u64,
    /// How long a plugin has to answer one request, in milliseconds; default 2000. A
    /// plugin that does not answer in time is dropped.
    pub plugin_request_timeout_ms: u64,
    /// Pre-installed plugins berth launches at start (`<2-digit index>-<name>`, owned
    /// by root, not group/other writable); default `/opt/nri/plugins`. Missing: none.
    pub plugin_path: PathBuf,
    /// Their configs (`<index>-<name>.conf` or `<name>.conf`, given in `Configure`);
    /// default `/etc/nri/conf.d`.
    pub plugin_config_path: PathBuf,
}

impl Default for NriConfig {
    fn default() -> Self {
        Self {
            enable: false,
            socket_path: PathBuf::from("/var/run/nri/nri.sock"),
            plugin_registration_timeout_ms: 5000,
            plugin_request_timeout_ms: 2000,
            plugin_path: PathBuf::from("/opt/nri/plugins"),
            plugin_config_path: PathBuf::from("/etc/nri/conf.d"),
        }
    }
}

impl NriConfig {
    /// Checks the values serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        let len = self.socket_path.as_os_str().len();
        if !self.socket_path.is_absolute() || len > 107 {
            return Err(format!(
                "socket_path: `{}` must be an absolute socket path of at most 107 bytes",
                self.socket_path.display()
            ));
        }
        for (field, path) in [
            ("plugin_path", &self.plugin_path),
            ("plugin_config_path", &self.plugin_config_path),
        ] {
            if !path.is_absolute() {
                return Err(format!("{field}: `{}` must be absolute", path.display()));
            }
        }
        for (field, ms) in [
            (
                "plugin_registration_timeout_ms",
                self.plugin_registration_timeout_ms,
            ),
            ("plugin_request_timeout_ms", self.plugin_request_timeout_ms),
        ] {
            if !(1..=300_000).contains(&ms) {
                return Err(format!("{field}: {ms} must be 1 to 300000"));
            }
        }
        Ok(())
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.plugin_request_timeout_ms)
    }
}

/// Why NRI failed: the socket, a plugin's connection, or a plugin's answer.
#[derive(Debug, thiserror::Error)]
pub enum NriError {
    /// The socket could not be set up.
    #[error("NRI socket {}: {context}: {source}", path.display())]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// What was being done.
        context: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A plugin broke the multiplexer or ttrpc framing, or sent what does not decode.
    #[error("NRI protocol: {0}")]
    Protocol(String),
    /// A plugin did not register properly.
    #[error("NRI plugin registration: {0}")]
    Registration(String),
    /// A plugin's connection is gone.
    #[error("NRI plugin {plugin}: connection closed")]
    Closed {
        /// `idx-name`.
        plugin: String,
    },
    /// A plugin did not answer in time (it is dropped).
    #[error("NRI plugin {plugin}: {method} got no answer within {timeout:?}")]
    Timeout {
        /// `idx-name`.
        plugin: String,
        /// The request.
        method: &'static str,
        /// The request timeout.
        timeout: Duration,
    },
    /// A plugin answered a request with an error: the CRI call it hooks fails.
    #[error("NRI plugin {plugin} failed {method}: {message}")]
    Plugin {
        /// `idx-name`.
        plugin: String,
        /// The request.
        method: &'static str,
        /// What the plugin said.
        message: String,
    },
    /// A plugin's adjustment cannot be applied (or conflicts with another plugin's).
    #[error("NRI plugin {plugin}: invalid adjustment: {why}")]
    Adjustment {
        /// `idx-name`.
        plugin: String,
        /// What is wrong.
        why: String,
    },
}

impl NriError {
    /// Whether the plugin is gone for it (dropped, not failing the CRI call).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            NriError::Protocol(_) | NriError::Closed { .. } | NriError::Timeout { .. }
        )
    }
}

/// The NRI adaptation: the connected plugins, in index order.
pub struct Nri {
    config: NriConfig,
    store: Option<Arc<Store>>,
    plugins: RwLock<Vec<Arc<Plugin>>>,
    sync: tokio::sync::RwLock<()>,
    /// Containers whose `StopContainer` was sent (it is sent once, by whichever of
    /// `StopContainer`, `StopPodSandbox` or the exit watcher sees the stop first).
    stopped: Mutex<HashSet<String>>,
    /// Cancelled when berth stops: the launched plugins are killed and reaped.
    stopping: CancellationToken,
    /// One task per launched plugin, owning its process until it is reaped.
    launched: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Nri {
    /// NRI off: no socket, no plugin, every event a no-op.
    pub fn disabled() -> Arc<Self> {
        Arc::new(Self {
            config: NriConfig::default(),
            store: None,
            plugins: RwLock::default(),
            sync: tokio::sync::RwLock::new(()),
            stopped: Mutex::default(),
            stopping: CancellationToken::new(),
            launched: Mutex::default(),
        })
    }

    /// Serves NRI on `config.socket_path` (0600, in a 0700 directory when it makes
    /// one), synchronizing plugins with `store`. Off in `config`: [`Nri::disabled`].
    pub fn serve(config: &NriConfig, store: Arc<Store>) -> Result<Arc<Self>, NriError> {
        if !config.enable {
            return Ok(Self::disabled());
        }
        let listener = bind(&config.socket_path)?;
        let nri = Arc::new(Self {
            config: config.clone(),
            store: Some(store),
            plugins: RwLock::default(),
            sync: tokio::sync::RwLock::new(()),
            stopped: Mutex::default(),
            stopping: CancellationToken::new(),
            launched: Mutex::default(),
        });
        tracing::info!(socket = %config.socket_path.display(), "serving NRI");
        tokio::spawn(accept(Arc::downgrade(&nri), listener));
        Ok(nri)
    }

    /// Launches the pre-installed plugins in `plugin_path` and waits until each
    /// registered and was synchronized, or failed (then it is killed and reaped), so
    /// that the first CRI call already meets them, as in containerd.
    pub async fn launch_plugins(self: &Arc<Self>) {
        if !self.config.enable {
            return;
        }
        let found = launch::discover(&self.config.plugin_path, &self.config.plugin_config_path);
        let mut admitted = Vec::new();
        for plugin in found {
            let file = plugin.path.display().to_string();
            let (mut child, stream) = match launch::launch(&plugin) {
                Ok(launched) => launched,
                Err(err) => {
                    tracing::warn!(file, error = %err, "launching an NRI plugin");
                    continue;
                }
            };
            let pid = child.id();
            let (done, result) = tokio::sync::oneshot::channel();
            let nri = Arc::downgrade(self);
            let stopping = self.stopping.clone();
            let task = tokio::spawn(async move {
                let admission = async {
                    match nri.upgrade() {
                        Some(nri) => nri.admit(stream, plugin.config).await,
                        None => Err(NriError::Registration("berth is stopping".into())),
                    }
                };
                let admission = tokio::select! {
                    a = admission => a,
                    () = stopping.cancelled() => Err(NriError::Registration("berth is stopping".into())),
                };
                match admission {
                    Ok(()) => {
                        let _ = done.send(());
                        tokio::select! {
                            status = child.wait() => {
                                tracing::warn!(file, pid, status = ?status, "launched NRI plugin exited");
                                return;
                            }
                            () = stopping.cancelled() => {}
                        }
                    }
                    Err(err) => {
                        tracing::warn!(file, pid, error = %err, "launched NRI plugin not admitted; killing it");
                    }
                }
                // Killed through the child's own handle (its pid, not a name) and
                // reaped: no zombie. Dropped unsent on failure, `done` then tells.
                let _ = child.start_kill();
                let _ = child.wait().await;
            });
            lock(&self.launched).push(task);
            admitted.push(result);
        }
        for result in admitted {
            let _ = result.await;
        }
    }

    /// Stops the launched plugins (killed and reaped) and closes every connection.
    pub async fn stop(&self) {
        self.stopping.cancel();
        for plugin in read(&self.plugins).iter() {
            plugin.close();
        }
        let tasks = std::mem::take(&mut *lock(&self.launched));
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Whether any plugin is connected (a verb may skip building NRI's messages).
    pub fn active(&self) -> bool {
        read(&self.plugins).iter().any(|p| !p.is_closed())
    }

    /// Held by a CRI verb across its record changes and events: no plugin
    /// synchronizes meanwhile.
    pub async fn block(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.sync.read().await
    }

    /// The plugins subscribed to `event`, in order.
    fn subscribed(&self, event: api::Event) -> Vec<Arc<Plugin>> {
        read(&self.plugins)
            .iter()
            .filter(|p| !p.is_closed() && p.subscribed(event))
            .cloned()
            .collect()
    }

    fn drop_plugin(&self, plugin: &Plugin, err: &NriError) {
        tracing::warn!(plugin = plugin.name, error = %err, "dropping NRI plugin");
        plugin.close();
        self.plugins
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| !std::ptr::eq(p.as_ref(), plugin));
    }

    /// Sends `request` as `method` to every plugin subscribed to `event`, in order,
    /// handing each answer to `each`. A plugin that is gone or times out is dropped
    /// and the others still hear of the event; the first plugin error ends the
    /// dispatch and is returned.
    async fn dispatch<Req: prost::Message, Resp: prost::Message + Default>(
        &self,
        event: api::Event,
        method: &'static str,
        request: &Req,
        mut each: impl FnMut(&str, Resp) -> Result<(), NriError>,
    ) -> Result<(), NriError> {
        for plugin in self.subscribed(event) {
            match plugin
                .call::<Req, Resp>(method, request, self.config.request_timeout())
                .await
            {
                Ok(answer) => each(&plugin.name, answer)?,
                Err(err) if err.is_fatal() => self.drop_plugin(&plugin, &err),
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// An event whose plugin errors change nothing: they are logged.
    async fn notify(&self, event: api::Event, method: &'static str, request: &impl prost::Message) {
        if let Err(err) = self
            .dispatch::<_, api::Empty>(event, method, request, |_, _| Ok(()))
            .await
        {
            tracing::warn!(error = %err, "NRI {method}");
        }
    }

    /// `RunPodSandbox`: a plugin error fails the pod's creation.
    pub async fn run_pod_sandbox(&self, pod: api::PodSandbox) -> Result<(), NriError> {
        let request = api::RunPodSandboxRequest { pod: Some(pod) };
        self.dispatch::<_, api::Empty>(
            api::Event::RunPodSandbox,
            "RunPodSandbox",
            &request,
            |_, _| Ok(()),
        )
        .await
    }

    /// `UpdatePodSandbox`, before a pod's resources change: a plugin error fails
    /// the change.
    pub async fn update_pod_sandbox(
        &self,
        pod: api::PodSandbox,
        overhead: api::LinuxResources,
        resources: api::LinuxResources,
    ) -> Result<(), NriError> {
        let request = api::UpdatePodSandboxRequest {
            pod: Some(pod),
            overhead_linux_resources: Some(overhead),
            linux_resources: Some(resources),
        };
        self.dispatch::<_, api::Empty>(
            api::Event::UpdatePodSandbox,
            "UpdatePodSandbox",
            &request,
            |_, _| Ok(()),
        )
        .await
    }

    /// `PostUpdatePodSandbox`, once a pod's resources changed.
    pub async fn post_update_pod_sandbox(&self, pod: api::PodSandbox) {
        let request = api::PodSandboxEvent { pod: Some(pod) };
        self.notify(
            api::Event::PostUpdatePodSandbox,
            "PostUpdatePodSandbox",
            &request,
        )
        .await;
    }

    /// `StopPodSandbox`, after the pod's containers stopped.
    pub async fn stop_pod_sandbox(&self, pod: api::PodSandbox) {
        let request = api::PodSandboxEvent { pod: Some(pod) };
        self.notify(api::Event::StopPodSandbox, "StopPodSandbox", &request)
            .await;
    }

    /// `RemovePodSandbox`, once it is gone.
    pub async fn remove_pod_sandbox(&self, pod: api::PodSandbox) {
        let request = api::PodSandboxEvent { pod: Some(pod) };
        self.notify(api::Event::RemovePodSandbox, "RemovePodSandbox", &request)
            .await;
    }

    /// `CreateContainer`: the plugins' adjustments, merged in plugin order, and the
    /// resource updates they ask for other containers; a plugin error (or two
    /// plugins setting the same thing) fails the creation. Evictions are logged, not
    /// acted on (NRI's own adaptation only counts them).
    pub async fn create_container(
        &self,
        pod: api::PodSandbox,
        container: api::Container,
    ) -> Result<(Adjustment, Updates), NriError> {
        let id = container.id.clone();
        let request = api::ContainerEvent {
            pod: Some(pod),
            container: Some(container),
        };
        let mut merged = Adjustment::default();
        let mut updates = Updates::default();
        self.dispatch::<_, api::CreateContainerResponse>(
            api::Event::CreateContainer,
            "CreateContainer",
            &request,
            |plugin, answer| {
                evictions(plugin, &answer.evict);
                if let Some(adjust) = answer.adjust {
                    merged.merge(plugin, adjust)?;
                }
                updates.merge(plugin, Some(&id), answer.update)
            },
        )
        .await?;
        Ok((merged, updates))
    }

    /// A container event whose plugin errors are only logged: `PostCreateContainer`,
    /// `StartContainer`, `PostStartContainer`, `PostUpdateContainer`,
    /// `RemoveContainer`.
    pub async fn container_event(
        &self,
        event: api::Event,
        pod: api::PodSandbox,
        container: api::Container,
    ) {
        if event == api::Event::RemoveContainer {
            lock(&self.stopped).remove(&container.id);
        }
        let method = match event {
            api::Event::PostCreateContainer => "PostCreateContainer",
            api::Event::StartContainer => "StartContainer",
            api::Event::PostStartContainer => "PostStartContainer",
            api::Event::PostUpdateContainer => "PostUpdateContainer",
            api::Event::RemoveContainer => "RemoveContainer",
            _ => return,
        };
        let request = api::ContainerEvent {
            pod: Some(pod),
            container: Some(container),
        };
        self.notify(event, method, &request).await;
    }

    /// `StopContainer`, once per container.
    pub async fn stop_container(&self, pod: api::PodSandbox, container: api::Container) {
        if !lock(&self.stopped).insert(container.id.clone()) {
            return;
        }
        let request = api::ContainerEvent {
            pod: Some(pod),
            container: Some(container),
        };
        if let Err(err) = self
            .dispatch::<_, api::StopContainerResponse>(
                api::Event::StopContainer,
                "StopContainer",
                &request,
                |_, _| Ok(()),
            )
            .await
        {
            tracing::warn!(error = %err, "NRI StopContainer");
        }
    }

    /// Whether `StopContainer` was sent for the container `id`.
    pub fn stop_sent(&self, id: &str) -> bool {
        lock(&self.stopped).contains(id)
    }

    /// `UpdateContainer`: the plugins' updates, merged in plugin order (the
    /// container's own among them changes what is applied to it); a plugin error
    /// fails the update.
    pub async fn update_container(
        &self,
        pod: api::PodSandbox,
        container: api::Container,
        resources: Option<api::LinuxResources>,
    ) -> Result<Updates, NriError> {
        let request = api::UpdateContainerRequest {
            pod: Some(pod),
            container: Some(container),
            linux_resources: resources,
        };
        let mut updates = Updates::default();
        self.dispatch::<_, api::UpdateContainerResponse>(
            api::Event::UpdateContainer,
            "UpdateContainer",
            &request,
            |plugin, answer| {
                evictions(plugin, &answer.evict);
                updates.merge(plugin, None, answer.update)
            },
        )
        .await?;
        Ok(updates)
    }

    /// Registers, configures and synchronizes a connected plugin, then adds it.
    /// `config` is the plugin's config file for a launched one, empty for one that
    /// connected.
    async fn admit(&self, stream: tokio::net::UnixStream, config: String) -> Result<(), NriError> {
        let registration = Duration::from_millis(self.config.plugin_registration_timeout_ms);
        let plugin = Plugin::connect(stream, registration).await?;
        let timeout = self.config.request_timeout();
        let configure = api::ConfigureRequest {
            config,
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            registration_timeout: self.config.plugin_registration_timeout_ms as i64,
            request_timeout: self.config.plugin_request_timeout_ms as i64,
            nri_version: String::new(),
        };
        let answer: api::ConfigureResponse = plugin
            .call("Configure", &configure, timeout)
            .await
            .inspect_err(|_| plugin.close())?;
        plugin
            .subscribe(answer.events)
            .inspect_err(|_| plugin.close())?;
        // From the snapshot until the plugin is listed, no verb changes what it saw.
        let _exclusive = self.sync.write().await;
        let (pods, containers) = self.snapshot();
        let request = api::SynchronizeRequest {
            pods,
            containers,
            more: false,
        };
        let _: api::SynchronizeResponse = plugin
            .call("Synchronize", &request, timeout)
            .await
            .inspect_err(|_| plugin.close())?;
        tracing::info!(plugin = plugin.name, "NRI plugin registered");
        let mut plugins = self.plugins.write().unwrap_or_else(|e| e.into_inner());
        plugins.retain(|p| !p.is_closed());
        plugins.push(plugin);
        plugins.sort_by(|a, b| (&a.idx, &a.name).cmp(&(&b.idx, &b.name)));
        Ok(())
    }

    /// The recorded pods and containers, as NRI describes them.
    fn snapshot(&self) -> (Vec<api::PodSandbox>, Vec<api::Container>) {
        let Some(store) = &self.store else {
            return Default::default();
        };
        let pods = store
            .query::<SandboxRecord>(&Query::default())
            .unwrap_or_default();
        let containers = store
            .query::<ContainerRecord>(&Query::default())
            .unwrap_or_default();
        let ids: Vec<&str> = containers.iter().map(|c| c.id.as_str()).collect();
        let states = store.container_states(&ids);
        let containers = containers
            .iter()
            .zip(states)
            .filter(|(c, _)| !c.is_creating())
            .map(|(c, state)| {
                let mut container = container_of(c);
                container.state = match state.map(|s| s.0) {
                    Some(runtimes::types::ContainerState::Running) => {
                        api::ContainerState::ContainerRunning
                    }
                    Some(runtimes::types::ContainerState::Exited) => {
                        api::ContainerState::ContainerStopped
                    }
                    _ => api::ContainerState::ContainerCreated,
                } as i32;
                container
            })
            .collect();
        let pods = pods
            .iter()
            .filter(|p| !p.is_creating())
            .map(|p| pod_of(p))
            .collect();
        (pods, containers)
    }
}

/// Logs the evictions a plugin asked for: NRI's adaptation (v0.12) does not act on
/// them either, and stopping containers on a plugin's word is kubelet's call.
fn evictions(plugin: &str, evict: &[api::ContainerEviction]) {
    for e in evict {
        tracing::warn!(
            plugin,
            container = e.container_id,
            reason = e.reason,
            "NRI plugin asked an eviction; not acted on"
        );
    }
}

/// Accepts plugins until berth drops the adaptation.
async fn accept(nri: std::sync::Weak<Nri>, listener: UnixListener) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!(error = %err, "accepting an NRI plugin");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(nri) = nri.upgrade() else { return };
        // The socket is root's only; a peer of another uid got in some other way.
        match stream.peer_cred() {
            Ok(cred) if cred.uid() == 0 || cred.uid() == nix::unistd::geteuid().as_raw() => {}
            _ => continue,
        }
        tokio::spawn(async move {
            if let Err(err) = nri.admit(stream, String::new()).await {
                tracing::warn!(error = %err, "NRI plugin not admitted");
            }
        });
    }
}

/// Binds the socket: its directory made 0700 when missing, a stale socket replaced
/// (one that still answers is another runtime's), the socket itself 0600.
fn bind(path: &Path) -> Result<UnixListener, NriError> {
    let fail = |context: &'static str| {
        move |source: std::io::Error| NriError::Socket {
            path: path.to_path_buf(),
            context,
            source,
        }
    };
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(fail("creating its directory"))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(fail("making its directory 0700"))?;
        }
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(fail("in use")(std::io::Error::from(
                std::io::ErrorKind::AddrInUse,
            )));
        }
        std::fs::remove_file(path).map_err(fail("removing the stale socket"))?;
    }
    let listener = UnixListener::bind(path).map_err(fail("binding"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(fail("making it 0600"))?;
    Ok(listener)
}

/// A recorded pod as NRI describes it.
pub fn pod_of(record: &SandboxRecord) -> api::PodSandbox {
    let metadata = record.config.metadata.clone().unwrap_or_default();
    api::PodSandbox {
        id: record.id.clone(),
        name: metadata.name,
        uid: metadata.uid,
        namespace: metadata.namespace,
        labels: record.config.labels.clone(),
        annotations: record.config.annotations.clone(),
        runtime_handler: record.runtime_handler.clone(),
        linux: Some(api::LinuxPodSandbox {
            cgroup_parent: record
                .config
                .linux
                .as_ref()
                .map(|l| l.cgroup_parent.clone())
                .unwrap_or_default(),
            ..Default::default()
        }),
        pid: 0,
        ips: record.ips.clone(),
    }
}

/// A recorded container as NRI describes it (from kubelet's config).
pub fn container_of(record: &ContainerRecord) -> api::Container {
    let config = &record.config;
    api::Container {
        id: record.id.clone(),
        pod_sandbox_id: record.sandbox_id.clone(),
        name: config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default(),
        state: api::ContainerState::ContainerCreated as i32,
        labels: config.labels.clone(),
        annotations: config.annotations.clone(),
        args: config.command.iter().chain(&config.args).cloned().collect(),
        env: config
            .envs
            .iter()
            .map(|kv| format!("{}={}", kv.key, String::from_utf8_lossy(&kv.value)))
            .collect(),
        created_at: record.created_at,
        ..Default::default()
    }
}

/// OCI resources as NRI describes them (what an `UpdateContainer` asks).
pub fn resources_of(r: &oci_spec::runtime::LinuxResources) -> api::LinuxResources {
    let i64s = |v: Option<i64>| v.map(|value| api::OptionalInt64 { value });
    let u64s = |v: Option<u64>| v.map(|value| api::OptionalUInt64 { value });
    api::LinuxResources {
        memory: r.memory().as_ref().map(|m| api::LinuxMemory {
            limit: i64s(m.limit()),
            reservation: i64s(m.reservation()),
            swap: i64s(m.swap()),
            ..Default::default()
        }),
        cpu: r.cpu().as_ref().map(|c| api::LinuxCpu {
            shares: u64s(c.shares()),
            quota: i64s(c.quota()),
            period: u64s(c.period()),
            cpus: c.cpus().clone().unwrap_or_default(),
            mems: c.mems().clone().unwrap_or_default(),
            ..Default::default()
        }),
        hugepage_limits: r
            .hugepage_limits()
            .iter()
            .flatten()
            .map(|h| api::HugepageLimit {
                page_size: h.page_size().clone(),
                limit: h.limit().max(0) as u64,
            })
            .collect(),
        unified: r.unified().clone().unwrap_or_default(),
        pids: r
            .pids()
            .as_ref()
            .map(|p| api::LinuxPids { limit: p.limit() }),
        ..Default::default()
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
