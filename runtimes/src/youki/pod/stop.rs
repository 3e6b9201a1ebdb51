//! StopPodSandbox: kill every container of the pod and take its network down (CNI DEL,
//! the network namespace unpinned). The supervisor stays, holding the containers' exit
//! statuses until the pod is removed. Stopping a missing or stopped pod succeeds.

use std::sync::Arc;

use crate::error::Result;
use crate::id::ContainerId;
use crate::network::NsKind;

use super::super::backend::{blocking, Backend};
use super::super::layout::key;
use super::super::records::PodPhase;
use super::pod_network;

impl Backend {
    /// Stops the pod `id`.
    pub async fn stop_pod(self: &Arc<Self>, id: &ContainerId) -> Result<()> {
        let k = key(id);
        let _guard = self.lock(&k).await;
        let Some(mut record) = self.index().pods.get(id).cloned() else {
            return Ok(());
        };
        let containers = self.index().containers_of(id);
        for c in containers {
            self.kill_container(&c).await?;
        }
        if let Some(netns) = record.netns.clone() {
            self.network
                .detach(&k, Some(&netns), &pod_network(&record))
                .await?;
            let (me, key2) = (self.clone(), k.clone());
            blocking(move || me.network.unpin(NsKind::Net, &key2)).await?;
        }
        record.ips.clear();
        record.netns = None;
        if record.phase == PodPhase::Ready {
            record.phase = PodPhase::Stopped;
        }
        self.save_pod(&record)
    }
}
