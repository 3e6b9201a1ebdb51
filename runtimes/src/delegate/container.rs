//! Container lifecycle verbs.

use std::time::Duration;

use berth_proto::delegate::{CreateContainerRequest, StopContainerRequest, UpdateResourcesRequest};

use super::wire::{from_json, id, json};
use super::DelegateRuntime;
use crate::error::Result;
use crate::id::ContainerId;
use crate::types::{ContainerSpec, ContainerStats, ContainerStatus};

impl DelegateRuntime {
    pub(super) async fn create(
        &self,
        sandbox: &ContainerId,
        container: &ContainerId,
        spec: &ContainerSpec,
    ) -> Result<()> {
        let message = CreateContainerRequest {
            sandbox: Some(id(sandbox)),
            id: Some(id(container)),
            spec: Some(json(spec)?),
        };
        let answer = self.client()?.create_container(message).await;
        answer.map_err(|s| self.error(s))?;
        Ok(())
    }

    pub(super) async fn start(&self, container: &ContainerId) -> Result<()> {
        let answer = self.client()?.start_container(id(container)).await;
        answer.map_err(|s| self.error(s))?;
        Ok(())
    }

    pub(super) async fn stop(&self, container: &ContainerId, timeout: Duration) -> Result<()> {
        let message = StopContainerRequest {
            id: Some(id(container)),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        };
        let answer = self.client()?.stop_container(message).await;
        answer.map_err(|s| self.error(s))?;
        Ok(())
    }

    pub(super) async fn remove_one(&self, container: &ContainerId) -> Result<()> {
        let answer = self.client()?.remove_container(id(container)).await;
        answer.map_err(|s| self.error(s))?;
        Ok(())
    }

    pub(super) async fn status(&self, container: &ContainerId) -> Result<ContainerStatus> {
        let answer = self.client()?.container_status(id(container)).await;
        from_json(
            "ContainerStatus",
            Some(answer.map_err(|s| self.error(s))?.into_inner()),
        )
    }

    pub(super) async fn stats(&self, container: &ContainerId) -> Result<ContainerStats> {
        let answer = self.client()?.container_stats(id(container)).await;
        from_json(
            "ContainerStats",
            Some(answer.map_err(|s| self.error(s))?.into_inner()),
        )
    }

    pub(super) async fn update(
        &self,
        container: &ContainerId,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        let message = UpdateResourcesRequest {
            id: Some(id(container)),
            resources: Some(json(resources)?),
        };
        let answer = self.client()?.update_container_resources(message).await;
        answer.map_err(|s| self.error(s))?;
        Ok(())
    }

    pub(super) async fn reopen_log(&self, container: &ContainerId) -> Result<()> {
        let answer = self.client()?.reopen_container_log(id(container)).await;
        answer.map_err(|s| self.error(s))?;
        Ok(())
    }
}
