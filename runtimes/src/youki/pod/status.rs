//! PodSandboxStatus and PodSandboxStats.

use std::sync::Arc;
use std::time::SystemTime;

use crate::error::Result;
use crate::id::ContainerId;
use crate::network::POD_INTERFACE;
use crate::types::{SandboxState, SandboxStats, SandboxStatus};

use super::super::backend::{blocking, Backend};
use super::super::records::PodPhase;
use super::super::stats;

impl Backend {
    /// The pod `id`: ready while it is set up and its supervisor answers.
    pub async fn pod_status(self: &Arc<Self>, id: &ContainerId) -> Result<SandboxStatus> {
        let record = self.pod(id)?;
        let client = self.supervisor(id);
        let alive =
            record.phase == PodPhase::Ready && blocking(move || Ok(client.ping().is_ok())).await?;
        Ok(SandboxStatus {
            state: if alive {
                SandboxState::Ready
            } else {
                SandboxState::NotReady
            },
            ips: record.ips,
            netns_path: record.netns,
        })
    }

    /// Resource usage of the pod's cgroup (all its containers) and its interface.
    pub async fn pod_stats(self: &Arc<Self>, id: &ContainerId) -> Result<SandboxStats> {
        let record = self.pod(id)?;
        let me = self.clone();
        blocking(move || {
            let usage = stats::read(&me.hierarchy, &record.cgroup);
            let network = record
                .netns
                .as_deref()
                .and_then(|ns| me.network.interface_stats(ns, POD_INTERFACE).ok());
            Ok(SandboxStats {
                timestamp: SystemTime::now(),
                cpu_usage_ns: usage.cpu_ns,
                memory: usage.memory,
                processes: usage.processes,
                network,
            })
        })
        .await
    }
}
