//! Where a pod or container lives on the host, for verbose statuses: its pod's
//! supervisor, its cgroup and its network namespace, from the records and `/proc`.

use std::sync::Arc;

use crate::error::Result;
use crate::id::ContainerId;
use crate::types::Inspection;

use super::backend::{blocking, Backend};
use super::layout::key;
use super::pod::supervisor_pid;

impl Backend {
    /// The pod or container `id`: the pid of its pod's supervisor while it runs, its
    /// cgroup once made (a pod's is made with its first container) and the pod's
    /// network namespace when it has its own.
    pub async fn inspect(self: &Arc<Self>, id: &ContainerId) -> Result<Inspection> {
        let (pod, cgroup) = match self.container(id) {
            Ok(c) => (self.pod(&c.pod)?, c.cgroup),
            Err(e) if e.is_not_found() => {
                let pod = self.pod(id)?;
                let cgroup = pod.cgroup.clone();
                (pod, cgroup)
            }
            Err(e) => return Err(e),
        };
        let me = self.clone();
        blocking(move || {
            let supervisor = supervisor_pid(&me.layout.pod_run(&key(&pod.id)));
            let made = !cgroup.is_empty() && me.hierarchy.exists(&cgroup);
            Ok(Inspection {
                supervisor_pid: supervisor.and_then(|p| u32::try_from(p.as_raw()).ok()),
                cgroup_path: made.then_some(cgroup),
                netns_path: pod.netns,
            })
        })
        .await
    }
}
