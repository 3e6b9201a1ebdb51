//! PodSandboxStatus and PodSandboxStats.

use std::sync::Arc;
use std::time::SystemTime;

use crate::error::Result;
use crate::id::ContainerId;
use crate::network::POD_INTERFACE;
use crate::types::{SandboxState, SandboxStats, SandboxStatus};

use super::super::backend::{blocking, Backend};
use super::super::client::CallError;
use super::super::layout::key;
use super::super::records::PodPhase;
use super::super::stats::{self, Depth};

impl Backend {
    /// The pod `id`: ready while it is set up and its supervisor runs. A supervisor
    /// that died makes the pod not ready for good (see `watch`).
    pub async fn pod_status(self: &Arc<Self>, id: &ContainerId) -> Result<SandboxStatus> {
        let record = self.pod(id)?;
        let alive = record.phase == PodPhase::Ready && self.supervisor_runs(id).await?;
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

    /// True while the supervisor of the pod `id` runs: its pidfd says so without a
    /// call; one that is not watched (no pidfd could be opened) is pinged, and
    /// watched from then on when it answers. An error when that ping neither
    /// succeeds nor finds the supervisor gone.
    pub async fn supervisor_runs(self: &Arc<Self>, id: &ContainerId) -> Result<bool> {
        if let Some(running) = self.supervisors.running(id) {
            return Ok(running);
        }
        let (me, id) = (self.clone(), id.clone());
        blocking(move || {
            match me.supervisor(&id).ping() {
                Ok(_) => {
                    me.supervisors.watch(&id, &me.layout.pod_run(&key(&id)));
                    Ok(true)
                }
                Err(CallError::Gone) => {
                    me.supervisors.exited(&id);
                    crate::metrics::supervisor(crate::metrics::SupervisorEvent::Lost);
                    Ok(false)
                }
                // Busy or wedged, not gone: unknown (asked again next time).
                Err(e) => Err(e.into_error("pod sandbox", &id.to_string())),
            }
        })
        .await
    }

    /// Resource usage of the pod's cgroup (all its containers) to `depth`, and its
    /// interface.
    pub async fn pod_stats(
        self: &Arc<Self>,
        id: &ContainerId,
        depth: Depth,
    ) -> Result<SandboxStats> {
        let record = self.pod(id)?;
        let me = self.clone();
        blocking(move || {
            let usage = stats::read(&me.hierarchy, &record.cgroup, depth);
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
                detail: usage.detail,
            })
        })
        .await
    }
}
