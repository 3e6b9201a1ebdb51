//! Pod sandboxes. There is no pause container: the pod's network, IPC and UTS
//! namespaces are pinned (bind-mounted, see `runtimes::network`), CNI attaches the
//! network to the pin, and the pod's supervisor holds a PID namespace when the pod
//! shares one. Why: no extra process and container per pod (faster start, less memory),
//! as CRI-O's `drop_infra_ctr`.
//!
//! A pod is its record (`pod.json`, intent first), its pins, its CNI attachment, its
//! `/etc` files and `/dev/shm`, its cgroup (made by the first container) and its
//! supervisor.

mod files;
mod remove;
mod resize;
mod run;
mod status;
mod stop;
pub(super) mod sysctl;

use crate::network::{NsKind, PodNetwork};

use super::finish::PodParts;
use super::layout::{key, Layout};
use super::records::PodRecord;

pub use files::{mount_shm, unmount_shm};
pub use remove::{supervisor_pid, teardown};

/// What CNI needs to know about the pod.
fn pod_network(record: &PodRecord) -> PodNetwork {
    PodNetwork {
        name: record.name.clone(),
        namespace: record.namespace.clone(),
        uid: record.uid.clone(),
        port_mappings: record.port_mappings.clone(),
    }
}

/// What the pod gives its containers' specs.
pub fn parts(
    layout: &Layout,
    record: &PodRecord,
    pid_namespace: Option<std::path::PathBuf>,
) -> PodParts {
    let k = key(&record.id);
    PodParts {
        namespaces: record.namespaces.clone(),
        netns: record.netns.clone(),
        ipcns: record.ipcns.clone(),
        utsns: record.utsns.clone(),
        userns: record.userns.clone(),
        pid_namespace,
        etc: layout.pod_etc(&k),
        shm: layout.pod_shm(&k),
        cgroup: record.cgroup.clone(),
    }
}

/// The pinned namespace of `kind` in `record`.
pub fn pin_of(record: &PodRecord, kind: NsKind) -> Option<std::path::PathBuf> {
    match kind {
        NsKind::Net => record.netns.clone(),
        NsKind::Ipc => record.ipcns.clone(),
        NsKind::Uts => record.utsns.clone(),
        NsKind::User => record.userns.clone(),
    }
}
