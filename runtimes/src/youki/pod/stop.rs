//! StopPodSandbox: kill every container of the pod and take its network down (CNI DEL,
//! the network namespace unpinned). The supervisor stays, holding the containers' exit
//! statuses until the pod is removed; when it died, what is left in the pod's cgroup is
//! killed. Stopping a missing or stopped pod succeeds; every
//! step runs even when an earlier one failed.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

use crate::error::{Error, Result};
use crate::id::ContainerId;
use crate::network::NsKind;

use super::super::backend::{blocking, Backend};
use super::super::layout::key;
use super::super::records::{PodPhase, PodRecord};
use super::super::NAME;
use super::pod_network;

/// How long the processes of a pod whose supervisor died may take to die of SIGKILL.
const KILL_PATIENCE: Duration = Duration::from_secs(5);

impl Backend {
    /// Stops the pod `id`.
    pub async fn stop_pod(self: &Arc<Self>, id: &ContainerId) -> Result<()> {
        let k = key(id);
        let _guard = self.lock(&k).await;
        let Some(mut record) = self.index().pods.get(id).cloned() else {
            return Ok(());
        };
        // Every container at once, as containerd: one slow death does not hold up the rest.
        let containers = self.index().containers_of(id);
        let killed = join_all(containers.iter().map(|c| self.kill_container(c))).await;
        let mut errors: Vec<Error> = killed.into_iter().filter_map(Result::err).collect();
        if let Err(e) = self.kill_orphans(id, &record).await {
            errors.push(e);
        }
        if let Some(netns) = record.netns.clone() {
            let detached = self
                .host
                .detach(&k, Some(&netns), &pod_network(&record))
                .await;
            match detached {
                Ok(()) => {
                    let (me, key2) = (self.clone(), k.clone());
                    match blocking(move || me.host.unpin(NsKind::Net, &key2)).await {
                        Ok(()) => {
                            record.ips.clear();
                            record.netns = None;
                        }
                        Err(e) => errors.push(e),
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        if record.phase == PodPhase::Ready {
            record.phase = PodPhase::Stopped;
        }
        self.save_pod(&record)?;
        Error::combine(format!("stopping pod sandbox {id}"), errors)
    }

    /// When the pod's supervisor is gone, nobody reaps or kills what ran under it: the
    /// init of a container with a PID namespace of its own (and whatever it started)
    /// was reparented away and may still run. Each container's cgroup was emptied
    /// when it was buried; what is left in a pod cgroup berth made is killed too (one
    /// kubelet names may be shared, so it is left to the containers' cgroups). A
    /// running supervisor killed its containers itself (and lives outside the pod's
    /// cgroup).
    async fn kill_orphans(self: &Arc<Self>, id: &ContainerId, record: &PodRecord) -> Result<()> {
        if !record.owns_cgroup || record.cgroup.is_empty() || self.supervisor_runs(id).await? {
            return Ok(());
        }
        let (me, cgroup) = (self.clone(), record.cgroup.clone());
        blocking(move || {
            if me.host.kill_cgroup(&cgroup, KILL_PATIENCE) {
                return Ok(());
            }
            Err(Error::backend(
                NAME,
                format!("processes of the pod's cgroup {cgroup} survive SIGKILL"),
            ))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::fake::Fixture;
    use super::super::super::records::PodPhase;

    #[tokio::test]
    async fn a_failed_cni_del_keeps_the_network_for_a_retry() {
        let f = Fixture::new();
        let pod = f.pod("web");
        f.container(&pod, "app");
        *f.host.failing_detaches.lock().unwrap() = 1;

        let err = f.backend.stop_pod(&pod).await.unwrap_err().to_string();
        assert!(
            err.contains(&format!("stopping pod sandbox {pod}")) && err.contains("CNI DEL"),
            "{err}"
        );
        // Stopped all the same, but the network namespace stays pinned and recorded
        // until CNI DEL succeeds.
        let record = f.backend.pod(&pod).unwrap();
        assert_eq!(record.phase, PodPhase::Stopped);
        assert!(record.netns.is_some() && !record.ips.is_empty());
        assert!(f.host.calls_to("unpin").is_empty());

        f.backend.stop_pod(&pod).await.unwrap();
        let record = f.backend.pod(&pod).unwrap();
        assert!(record.netns.is_none() && record.ips.is_empty());
        assert_eq!(
            f.host.calls_to("unpin"),
            [format!("unpin Net {}", super::key(&pod))]
        );
        assert!(f.host.attached.lock().unwrap().is_empty());
        // Stopping a stopped pod detaches nothing more.
        f.backend.stop_pod(&pod).await.unwrap();
        assert_eq!(f.host.calls_to("detach").len(), 2);
    }
}
