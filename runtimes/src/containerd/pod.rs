//! The pod verbs: the pod itself is made and taken down by [`Sandboxes`] (as youki
//! does); this backend stops and removes its containers in containerd first, so a
//! pod's teardown is one call from the agent, as the `Runtime` trait promises.

use std::time::Duration;

use futures::future::join_all;

use super::records::Phase;
use super::Containerd;
use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::types::{SandboxSpec, SandboxStatus};

impl Containerd {
    /// RunPodSandbox.
    /// A pod is made only while containerd answers: its containers could not run.
    pub async fn run_pod(&self, id: &ContainerId, spec: &SandboxSpec) -> Result<SandboxStatus> {
        self.version().await?;
        self.sandboxes.run(id, spec).await
    }

    /// StopPodSandbox: every container killed at once, then the pod's network down.
    /// Every step runs even when one failed.
    pub async fn stop_pod(&self, id: &ContainerId) -> Result<()> {
        let containers = self.containers_of(id);
        let stopped = join_all(
            containers
                .iter()
                .filter(|c| c.phase != Phase::Removing)
                .map(|c| self.stop_container(&c.id, Duration::ZERO)),
        )
        .await;
        let mut errors: Vec<Error> = stopped.into_iter().filter_map(Result::err).collect();
        if let Err(e) = self.sandboxes.stop(id).await {
            errors.push(e);
        }
        Error::combine(format!("StopPodSandbox {id}"), errors)
    }

    /// RemovePodSandbox: every container removed (those whose removal goes on in
    /// the background awaited, a failed one retried), then the pod. A failure keeps
    /// the pod, so kubelet's retry finishes it.
    pub async fn remove_pod(&self, id: &ContainerId) -> Result<()> {
        let containers = self.containers_of(id);
        let removed = join_all(containers.iter().map(|c| self.remove_now(&c.id))).await;
        let errors: Vec<Error> = removed.into_iter().filter_map(Result::err).collect();
        if !errors.is_empty() {
            return Error::combine(format!("RemovePodSandbox {id}"), errors);
        }
        self.sandboxes.remove(id).await
    }
}
