//! Pod sandbox verbs.

use berth_proto::delegate::{RunPodSandboxRequest, UpdateResourcesRequest};

use super::wire::{from_json, id, json};
use super::DelegateRuntime;
use crate::error::Result;
use crate::id::ContainerId;
use crate::types::{SandboxSpec, SandboxStats, SandboxStatus};

impl DelegateRuntime {
    pub(super) async fn run_pod(
        &self,
        pod: &ContainerId,
        spec: &SandboxSpec,
    ) -> Result<SandboxStatus> {
        let message = RunPodSandboxRequest {
            id: Some(id(pod)),
            spec: Some(json(spec)?),
        };
        let answer = self.client()?.run_pod_sandbox(message).await;
        from_json(
            "SandboxStatus",
            Some(answer.map_err(|s| self.error(s))?.into_inner()),
        )
    }

    pub(super) async fn pod_status(&self, pod: &ContainerId) -> Result<SandboxStatus> {
        let answer = self.client()?.pod_sandbox_status(id(pod)).await;
        from_json(
            "SandboxStatus",
            Some(answer.map_err(|s| self.error(s))?.into_inner()),
        )
    }

    pub(super) async fn pod_stats(&self, pod: &ContainerId) -> Result<SandboxStats> {
        let answer = self.client()?.pod_sandbox_stats(id(pod)).await;
        from_json(
            "SandboxStats",
            Some(answer.map_err(|s| self.error(s))?.into_inner()),
        )
    }

    pub(super) async fn stop_pod(&self, pod: &ContainerId) -> Result<()> {
        let answer = self.client()?.stop_pod_sandbox(id(pod)).await;
        answer.map_err(|s| self.error(s))?;
        Ok(())
    }

    pub(super) async fn update_pod(
        &self,
        pod: &ContainerId,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        let message = UpdateResourcesRequest {
            id: Some(id(pod)),
            resources: Some(json(resources)?),
        };
        let answer = self.client()?.update_pod_sandbox_resources(message).await;
        answer.map_err(|s| self.error(s))?;
        Ok(())
    }

    pub(super) async fn remove_pod(&self, pod: &ContainerId) -> Result<()> {
        let answer = self.client()?.remove_pod_sandbox(id(pod)).await;
        answer.map_err(|s| self.error(s))?;
        Ok(())
    }
}
