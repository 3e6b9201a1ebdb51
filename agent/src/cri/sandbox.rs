//! A sandbox record as CRI shows it.

use k8s_cri::v1 as cri;

use super::objects::shown_labels;
use crate::store::{SandboxPhase, SandboxRecord};

/// The CRI state of a recorded phase (`Creating` records are never shown).
pub(super) fn cri_state(phase: SandboxPhase) -> cri::PodSandboxState {
    match phase {
        SandboxPhase::Ready => cri::PodSandboxState::SandboxReady,
        SandboxPhase::Creating | SandboxPhase::NotReady => cri::PodSandboxState::SandboxNotready,
    }
}

/// The `ListPodSandbox` entry of `record`.
pub(super) fn to_cri_sandbox(record: &SandboxRecord) -> cri::PodSandbox {
    cri::PodSandbox {
        id: record.id.clone(),
        metadata: record.config.metadata.clone(),
        state: cri_state(record.phase) as i32,
        created_at: record.created_at,
        labels: shown_labels(&record.config.labels, &record.container_id),
        annotations: record.config.annotations.clone(),
        runtime_handler: record.runtime_handler.clone(),
    }
}

/// The namespace options the pod was created with, as `PodSandboxStatus` reports them.
pub(super) fn namespace_options(record: &SandboxRecord) -> Option<cri::NamespaceOption> {
    record
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
}
