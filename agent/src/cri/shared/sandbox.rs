//! A sandbox record as CRI shows it.

use berth_proto::cri::v1 as cri;
use runtimes::types::{SandboxState, SandboxStatus};

use super::objects::shown_labels;
use crate::cri::Cri;
use crate::store::{SandboxPhase, SandboxRecord};

/// The CRI state of a recorded phase (`Creating` records are never shown).
pub(in crate::cri) fn cri_state(phase: SandboxPhase) -> cri::PodSandboxState {
    match phase {
        SandboxPhase::Ready => cri::PodSandboxState::SandboxReady,
        SandboxPhase::Creating | SandboxPhase::NotReady => cri::PodSandboxState::SandboxNotready,
    }
}

/// The `ListPodSandbox` entry of `record`, in `phase`.
pub(in crate::cri) fn to_cri_sandbox(
    record: &SandboxRecord,
    phase: SandboxPhase,
) -> cri::PodSandbox {
    cri::PodSandbox {
        id: record.id.clone(),
        metadata: record.config.metadata.clone(),
        state: cri_state(phase) as i32,
        created_at: record.created_at,
        labels: shown_labels(&record.config.labels, &record.container_id),
        annotations: record.config.annotations.clone(),
        runtime_handler: record.runtime_handler.clone(),
    }
}

/// The namespace options the pod was created with, as `PodSandboxStatus` reports them.
pub(in crate::cri) fn namespace_options(record: &SandboxRecord) -> Option<cri::NamespaceOption> {
    record
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
}

/// The phase kubelet is shown for `record`, given what its backend answered about it
/// (`backend`). A sandbox the backend no longer has ready (its supervisor died; a
/// reboot emptied `run_dir`) is recorded not ready for good, as containerd's CRI plugin
/// does when a sandbox's shim exits: kubelet then stops it, removes it and makes a new
/// one, and every listing and state filter agrees. A failure to ask shows the sandbox
/// not ready without recording it (kubelet asks again).
pub(in crate::cri) fn settle(
    cri: &Cri,
    record: &SandboxRecord,
    backend: &runtimes::Result<SandboxStatus>,
) -> SandboxPhase {
    if record.phase != SandboxPhase::Ready {
        return record.phase;
    }
    let gone = match backend {
        Ok(status) if status.state == SandboxState::Ready => return SandboxPhase::Ready,
        Ok(_) => true,
        Err(err) => err.is_not_found(),
    };
    if gone {
        tracing::warn!(pod = %record.id, berth_id = %record.container_id, "the pod sandbox is not ready any more (its backend says so); kubelet will replace it");
        if let Err(err) = cri
            .store
            .update::<SandboxRecord>(&record.id, |r| r.phase = SandboxPhase::NotReady)
        {
            tracing::warn!(pod = %record.id, berth_id = %record.container_id, error = %err, "recording the pod sandbox not ready");
        }
    }
    SandboxPhase::NotReady
}
