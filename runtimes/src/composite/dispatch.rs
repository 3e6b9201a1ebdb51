//! Choosing a pod's backend, and refusing what this node cannot run.

use std::sync::Arc;

use super::{read, write, CompositeRuntime};
use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::runtime::Runtime;
use crate::types::SandboxSpec;

/// The pod annotation that names a backend or runtime handler for the pod.
pub const ISOLATION_ANNOTATION: &str = "berth.dev/isolation";

impl CompositeRuntime {
    /// Picks the backend for the pod `id`. Precedence: runtime handler > isolation
    /// annotation > required OS > primary.
    pub(super) async fn select(
        &self,
        id: &ContainerId,
        spec: &SandboxSpec,
    ) -> Result<Arc<dyn Runtime>> {
        let os = match &spec.image {
            Some(image) => self.image_os(image).await.or_else(|| spec.os.clone()),
            None => spec.os.clone(),
        };
        let refuse = |reason: String| Error::RouteToPeer {
            service: id.service().to_string(),
            required_os: os.clone().unwrap_or_else(|| "*".into()),
            handler: spec.runtime_handler.clone(),
            container_id: id.to_string(),
            reason,
        };

        let chosen = if !spec.runtime_handler.is_empty() {
            let handler = &spec.runtime_handler;
            self.handlers.get(handler).cloned().ok_or_else(|| {
                refuse(format!(
                    "runtime handler `{handler}` is not served here (this node serves {}); \
                     give the RuntimeClass a nodeSelector for nodes that serve it",
                    self.handler_list()
                ))
            })?
        } else if let Some(isolation) = spec.annotations.get(ISOLATION_ANNOTATION) {
            self.handlers
                .get(isolation)
                .or_else(|| self.backend_named(isolation))
                .cloned()
                .ok_or_else(|| {
                    refuse(format!(
                        "annotation {ISOLATION_ANNOTATION}={isolation} names no backend or runtime \
                         handler of this node (backends: {}; handlers: {})",
                        self.backend_list(),
                        self.handler_list()
                    ))
                })?
        } else if let Some(os) = &os {
            let chosen = self
                .backends()
                .into_iter()
                .find(|b| b.runs_os(os))
                .cloned()
                .ok_or_else(|| {
                    refuse(format!(
                        "no backend of this node runs {os} workloads (backends: {}); configure a \
                     delegate that does, or let the scheduler place the pod on a {os} node",
                        self.backend_list()
                    ))
                })?;
            return self.check_delegate_ready(chosen, refuse).await;
        } else {
            self.primary.clone()
        };

        match &os {
            Some(os) if !chosen.runs_os(os) => Err(refuse(format!(
                "the workload needs {os} but the backend `{}` chosen for it does not run {os}",
                chosen.name()
            ))),
            _ => self.check_delegate_ready(chosen, refuse).await,
        }
    }

    /// A new pod for an unreachable delegate is refused before anything is made, so
    /// the scheduler can place it where it can run (the pod's record would otherwise
    /// point at a delegate that may never come back). Pods the delegate already runs
    /// are not affected: their calls answer `Unavailable`.
    async fn check_delegate_ready(
        &self,
        chosen: Arc<dyn Runtime>,
        refuse: impl Fn(String) -> Error,
    ) -> Result<Arc<dyn Runtime>> {
        let is_delegate = self
            .delegate
            .as_ref()
            .is_some_and(|d| d.name() == chosen.name());
        if !is_delegate {
            return Ok(chosen);
        }
        match chosen.ready().await {
            Ok(()) => Ok(chosen),
            Err(e) => Err(refuse(format!(
                "this node's delegate `{}` cannot take the pod now ({e}); bring the delegate \
                 back, or let the scheduler place the pod on a node that runs it itself",
                chosen.name()
            ))),
        }
    }

    /// Refuses a container whose image's OS its pod's backend cannot run.
    pub(super) async fn check_image_os(
        &self,
        id: &ContainerId,
        backend: &Arc<dyn Runtime>,
        image: &str,
    ) -> Result<()> {
        match self.image_os(image).await {
            Some(os) if !backend.runs_os(&os) => Err(Error::RouteToPeer {
                service: id.service().to_string(),
                required_os: os.clone(),
                handler: String::new(),
                container_id: id.to_string(),
                reason: format!(
                    "image {image} is a {os} image but this pod runs on the `{}` backend, which \
                     does not run {os}; run it in a pod with the nodeSelector \
                     `kubernetes.io/os: {os}`, on a node that runs {os}",
                    backend.name()
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Why a container of the pod `sandbox` cannot have `image`, which no backend
    /// holds: when this node refused to pull it because none of its backends runs the
    /// image's OS, the container belongs on a peer as well ([`Error::RouteToPeer`],
    /// naming the pod: no container id exists yet), not merely a missing image.
    /// `None` when nothing is known against it (the image is then just not pulled).
    pub async fn refusal_of_missing_image(
        &self,
        sandbox: &ContainerId,
        image: &str,
    ) -> Option<Error> {
        if !read(&self.image_os).contains_key(image) {
            return None;
        }
        let backend = self.owner(sandbox).ok()?;
        self.check_image_os(sandbox, &backend, image).await.err()
    }

    /// Caches the OS of an image under its id and every name it is known by.
    pub(super) fn note_image_os(&self, reference: Option<&str>, info: &crate::types::ImageInfo) {
        if info.config.os.is_empty() {
            return;
        }
        let mut cache = write(&self.image_os);
        let names = info
            .repo_tags
            .iter()
            .chain(&info.repo_digests)
            .map(String::as_str);
        for name in reference
            .into_iter()
            .chain(std::iter::once(info.id.as_str()))
            .chain(names)
        {
            cache.insert(name.to_string(), info.config.os.clone());
        }
    }

    /// The OS of `image`: from the cache, else from the backends' local image stores
    /// (no registry is asked; after a restart the stores still know what was pulled).
    pub(super) async fn image_os(&self, image: &str) -> Option<String> {
        if let Some(os) = read(&self.image_os).get(image) {
            return Some(os.clone());
        }
        match self.fan_out_status(image).await {
            Ok(Some(info)) if !info.config.os.is_empty() => Some(info.config.os),
            _ => None,
        }
    }

    fn handler_list(&self) -> String {
        let names: Vec<String> = self
            .runtime_handlers()
            .into_iter()
            .map(|h| {
                if h.is_empty() {
                    "the default handler".into()
                } else {
                    format!("`{h}`")
                }
            })
            .collect();
        names.join(", ")
    }

    fn backend_list(&self) -> String {
        let names: Vec<&str> = self.backends().iter().map(|b| b.name()).collect();
        names.join(", ")
    }
}
