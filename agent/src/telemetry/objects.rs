//! Pods, containers and the state store counted for a metrics scrape.

use std::collections::HashMap;

use runtimes::types::ContainerState;

use super::metrics::{ObjectCounts, ObjectKey};
use crate::store::{ContainerPhase, SandboxPhase, Store};

/// Pods by phase, runtime handler and backend; containers by the state last seen
/// (the store's index keeps what the last listing or status found; kubelet lists
/// every second), and their pod's handler and backend; the store file's size and its
/// records. From the store's in-memory index, so a scrape reads no table and copies
/// no record.
pub fn count(store: &Store) -> ObjectCounts {
    let mut counts = ObjectCounts {
        store_bytes: std::fs::metadata(store.path()).map_or(0, |m| m.len()),
        ..Default::default()
    };
    let mut pod_of: HashMap<String, (String, String)> = HashMap::new();
    let mut containers: Vec<(String, &'static str)> = Vec::new();
    store.visit(
        |pod| {
            let state = match pod.phase {
                SandboxPhase::Creating => "creating",
                SandboxPhase::Ready => "ready",
                SandboxPhase::NotReady => "notready",
            };
            let key = ObjectKey {
                state,
                handler: pod.runtime_handler.clone(),
                backend: pod.backend.clone(),
            };
            *counts.pods.entry(key).or_default() += 1;
            pod_of.insert(
                pod.id.clone(),
                (pod.runtime_handler.clone(), pod.backend.clone()),
            );
        },
        |c, seen| {
            let state = match (c.phase, seen) {
                (ContainerPhase::Creating, _) => "creating",
                (ContainerPhase::Created, Some(ContainerState::Created)) => "created",
                (ContainerPhase::Created, Some(ContainerState::Running)) => "running",
                (ContainerPhase::Created, Some(ContainerState::Exited)) => "exited",
                (ContainerPhase::Created, Some(ContainerState::Unknown) | None) => "unknown",
            };
            containers.push((c.sandbox_id.clone(), state));
        },
    );
    let records = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    counts
        .store_records
        .insert("pod_sandboxes", records(pod_of.len()));
    counts
        .store_records
        .insert("containers", records(containers.len()));
    for (sandbox, state) in containers {
        let (handler, backend) = pod_of.get(&sandbox).cloned().unwrap_or_default();
        let key = ObjectKey {
            state,
            handler,
            backend,
        };
        *counts.containers.entry(key).or_default() += 1;
    }
    counts
}
