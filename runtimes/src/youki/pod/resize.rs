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

#[cfg(test)]
mod tests {
    use oci_spec::runtime::{LinuxCpuBuilder, LinuxResources};

    use super::super::super::fake::Fixture;
    use super::*;

    fn shares(n: u64) -> LinuxResources {
        let mut resources = LinuxResources::default();
        resources.set_cpu(Some(LinuxCpuBuilder::default().shares(n).build().unwrap()));
        resources
    }

    #[tokio::test]
    async fn only_a_ready_pod_in_a_cgroup_of_berths_own_is_written() {
        let f = Fixture::new();
        // No container made the pod's cgroup yet: nothing to write into.
        let pod = f.live_pod("web");
        let err = f
            .backend
            .update_pod_resources(&pod, &shares(512))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");
        assert!(err.to_string().contains("no cgroup yet"), "{err}");
        // A cgroup kubelet named is kubelet's (it resized it already); a stopped pod
        // has nothing running: both succeed without a write.
        let kubelets = f.live_pod("kubelets");
        let mut record = f.backend.pod(&kubelets).unwrap();
        record.owns_cgroup = false;
        record.cgroup = "/kubepods/burstable/pod-uid".into();
        f.backend.save_pod(&record).unwrap();
        f.backend
            .update_pod_resources(&kubelets, &shares(512))
            .await
            .unwrap();
        let stopped = f.live_pod("stopped");
        f.backend.stop_pod(&stopped).await.unwrap();
        f.backend
            .update_pod_resources(&stopped, &shares(512))
            .await
            .unwrap();
        let unknown = ContainerId::new("gone", "sandbox", 0, "node").unwrap();
        let err = f
            .backend
            .update_pod_resources(&unknown, &shares(512))
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{err:?}");
    }
}
