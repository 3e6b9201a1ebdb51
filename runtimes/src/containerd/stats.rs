//! ContainerStats: read from the container's cgroup directly (the numbers and fields
//! youki reports, so both backends' stats agree), the writable layer from berth's
//! overlay.

use std::time::SystemTime;

use super::Containerd;
use crate::error::Result;
use crate::id::ContainerId;
use crate::types::ContainerStats;
use crate::youki::stats::Depth;

impl Containerd {
    /// ContainerStats, read to `depth`.
    pub async fn container_stats(&self, id: &ContainerId, depth: Depth) -> Result<ContainerStats> {
        let record = self.record(id)?;
        let (usage, upper, layer) = self.sandboxes.usage(id, &record.cgroup, depth).await?;
        let detail = match depth {
            Depth::Stats => usage.detail,
            Depth::Metrics => crate::image::usage::with_fs_capacity(usage.detail, &upper),
        };
        Ok(ContainerStats {
            timestamp: SystemTime::now(),
            cpu_usage_ns: usage.cpu_ns,
            memory: usage.memory,
            writable_layer: upper,
            writable_layer_bytes: layer.used_bytes,
            writable_layer_inodes: layer.inodes_used,
            detail,
        })
    }
}
