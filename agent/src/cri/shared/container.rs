//! A container record, with its backend's view of it, as CRI shows it.

use berth_proto::cri::v1 as cri;
use runtimes::types::{ContainerState, ContainerStatus};
use runtimes::{Error, Runtime};

use super::objects::shown_labels;
use crate::cri::Cri;
use crate::store::ContainerRecord;

/// The exit code reported for a container its backend lost track of (as containerd).
const UNKNOWN_EXIT_CODE: i32 = 255;

/// The backend's status of `record`. A container the backend no longer knows (lost
/// in a reboot, say) has exited for an unknown reason, so kubelet replaces it; any
/// other failure to ask makes its state unknown, with the failure as message.
pub(in crate::cri) async fn observe(cri: &Cri, record: &ContainerRecord) -> ContainerStatus {
    // Read before asking: a change during the call moves it past what is recorded.
    let generation = cri.runtime.state_generation();
    let status = observe_backend(cri, record).await;
    // Listings show what was seen last (unknown is asked again there anyway).
    cri.store
        .set_container_state(&record.id, status.state, generation);
    status
}

async fn observe_backend(cri: &Cri, record: &ContainerRecord) -> ContainerStatus {
    match cri.runtime.container_status(&record.container_id).await {
        Ok(status) => status,
        Err(err) if err.is_not_found() => ContainerStatus {
            state: ContainerState::Exited,
            exit_code: UNKNOWN_EXIT_CODE,
            reason: "Unknown".to_string(),
            message: format!(
                "the backend no longer knows container {}",
                record.container_id
            ),
            ..ContainerStatus::default()
        },
        Err(err) => ContainerStatus {
            state: ContainerState::Unknown,
            message: err.to_string(),
            ..ContainerStatus::default()
        },
    }
}

/// The state of each of `records` as a listing shows it, from memory when it can be:
/// the index keeps the state last seen with the backend's state generation it was read
/// at ([`runtimes::Runtime::state_generation`]: for youki it moves with every record
/// written, every exit record a supervisor writes, seen through inotify, and every
/// supervisor's death, seen through its pidfd). A state read at the current generation
/// is still right and an exit is for good; only the others (a generation moved, or the
/// backend has none, or the state is unknown) are checked again, in one batched call
/// ([`runtimes::Runtime::container_states`]: for youki a stat of each exit record and
/// a poll of the pod supervisors' pidfds, no socket round trip). So a listing of a
/// node where nothing changed is an in-memory filter, and a container that ended by
/// itself is listed exited once its exit is recorded, with no task to run or stop. As
/// [`observe`], a container its backend lost has exited and one it cannot be asked
/// about is unknown (asked again next time).
pub(in crate::cri) async fn listed_states(
    cri: &Cri,
    records: &[impl std::ops::Deref<Target = ContainerRecord>],
) -> Vec<ContainerState> {
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    // Read before asking: a change during the call moves it past what is recorded.
    let generation = cri.runtime.state_generation();
    let known = cri.store.container_states(&ids);
    let stale: Vec<usize> = (0..records.len())
        .filter(|&i| match known[i] {
            Some((ContainerState::Exited, _)) => false,
            Some((ContainerState::Unknown, _)) | None => true,
            Some((_, read_at)) => generation.is_none() || read_at != generation,
        })
        .collect();
    let mut states: Vec<Option<ContainerState>> =
        known.into_iter().map(|k| k.map(|(s, _)| s)).collect();
    if !stale.is_empty() {
        let asked: Vec<runtimes::ContainerId> = stale
            .iter()
            .map(|&i| records[i].container_id.clone())
            .collect();
        let answers = cri.runtime.container_states(&asked).await;
        for (&i, answer) in stale.iter().zip(answers) {
            let state = match answer {
                Ok(state) => state,
                Err(err) if err.is_not_found() => ContainerState::Exited,
                Err(err) => {
                    tracing::debug!(container = %records[i].id, berth_id = %records[i].container_id, error = %err, "no state for the listing");
                    ContainerState::Unknown
                }
            };
            cri.store
                .set_container_state(&records[i].id, state, generation);
            states[i] = Some(state);
        }
    }
    states
        .into_iter()
        .map(|s| s.unwrap_or(ContainerState::Unknown))
        .collect()
}

/// `FailedPrecondition` unless the backend sees the container running (what `Exec`
/// and `Attach` need).
pub(in crate::cri) async fn require_running(
    cri: &Cri,
    method: &str,
    record: &ContainerRecord,
) -> runtimes::Result<()> {
    let status = observe(cri, record).await;
    if status.state == ContainerState::Running {
        return Ok(());
    }
    Err(Error::FailedPrecondition(format!(
        "{method}: container {} ({}) is not running: it is {:?}",
        record.id, record.container_id, status.state
    )))
}

/// CRI's state for a backend state.
pub(in crate::cri) fn cri_state(state: ContainerState) -> cri::ContainerState {
    match state {
        ContainerState::Created => cri::ContainerState::ContainerCreated,
        ContainerState::Running => cri::ContainerState::ContainerRunning,
        ContainerState::Exited => cri::ContainerState::ContainerExited,
        ContainerState::Unknown => cri::ContainerState::ContainerUnknown,
    }
}

/// The image as kubelet sees it: its first repo tag (what the request named when it
/// has none), as containerd reports it.
pub(in crate::cri) fn image_spec(record: &ContainerRecord) -> cri::ImageSpec {
    let requested = record.config.image.clone().unwrap_or_default();
    cri::ImageSpec {
        image: record.image_tag.clone().unwrap_or(requested.image),
        ..requested
    }
}

/// The image reference: its first repo digest, else its id.
pub(in crate::cri) fn image_ref(record: &ContainerRecord) -> String {
    record
        .image_digest
        .clone()
        .unwrap_or_else(|| record.image_id.clone())
}

/// The `ListContainers` entry of `record` in `state`.
pub(in crate::cri) fn to_cri_container(
    record: &ContainerRecord,
    state: ContainerState,
) -> cri::Container {
    cri::Container {
        id: record.id.clone(),
        pod_sandbox_id: record.sandbox_id.clone(),
        metadata: record.config.metadata.clone(),
        image: Some(image_spec(record)),
        image_ref: image_ref(record),
        state: cri_state(state) as i32,
        created_at: record.created_at,
        labels: shown_labels(&record.config.labels, &record.container_id),
        annotations: record.config.annotations.clone(),
        image_id: record.image_id.clone(),
    }
}

/// The `ContainerStats` attributes of `record`.
pub(in crate::cri) fn attributes(record: &ContainerRecord) -> cri::ContainerAttributes {
    cri::ContainerAttributes {
        id: record.id.clone(),
        metadata: record.config.metadata.clone(),
        labels: shown_labels(&record.config.labels, &record.container_id),
        annotations: record.config.annotations.clone(),
    }
}
