//! UpdatePodSandboxResources: new limits for the pod's own cgroup (in-place pod
//! resize), written from this process into the cgroup files; no container restarts.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::id::ContainerId;

use super::super::backend::{blocking, Backend};
use super::super::layout::key;
use super::super::records::PodPhase;

impl Backend {
    /// Applies `resources` (the pod's overhead plus its containers' sum) to the pod
    /// `id`'s cgroup. A cgroup kubelet named (`cgroup_parent`) is kubelet's: it
    /// reconfigured it before calling (the CRI contract), so it is left alone. A pod
    /// that is not ready has nothing running to resize: the call succeeds, as
    /// containerd's does.
    pub async fn update_pod_resources(
        self: &Arc<Self>,
        id: &ContainerId,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<()> {
        let _guard = self.lock(&key(id)).await;
        let record = self.pod(id)?;
        if record.phase != PodPhase::Ready || !record.owns_cgroup || record.cgroup.is_empty() {
            return Ok(());
        }
        if !self.hierarchy.exists(&record.cgroup) {
            // The first container makes the pod's cgroup; an empty one made here
            // would have an empty cpuset (v1) its containers could not join.
            return Err(Error::FailedPrecondition(format!(
                "UpdatePodSandboxResources {id}: the pod has no cgroup yet (no container was created in it)"
            )));
        }
        let (me, resources) = (self.clone(), resources.clone());
        blocking(move || me.hierarchy.update(&record.cgroup, &resources)).await
    }
}
