//! Pods and containers counted for a metrics scrape, from the state store.

use std::collections::HashMap;

use super::metrics::ObjectCounts;
use crate::store::{ContainerPhase, ContainerRecord, SandboxPhase, SandboxRecord, Store};

/// Pods by phase and runtime handler, containers by phase and their pod's handler,
/// and the store file's size; from the store's in-memory index, so a scrape reads no
/// table.
pub fn count(store: &Store) -> ObjectCounts {
    let mut counts = ObjectCounts {
        store_bytes: std::fs::metadata(store.path()).map_or(0, |m| m.len()),
        ..Default::default()
    };
    let pods = store.indexed_records::<SandboxRecord>();
    let containers = store.indexed_records::<ContainerRecord>();
    let mut handler_of = HashMap::new();
    for pod in &pods {
        let state = match pod.phase {
            SandboxPhase::Creating => "creating",
            SandboxPhase::Ready => "ready",
            SandboxPhase::NotReady => "notready",
        };
        *counts
            .pods
            .entry((state.into(), pod.runtime_handler.clone()))
            .or_default() += 1;
        handler_of.insert(pod.id.as_str(), pod.runtime_handler.as_str());
    }
    for c in &containers {
        let state = match c.phase {
            ContainerPhase::Creating => "creating",
            ContainerPhase::Created => "created",
        };
        let handler = handler_of
            .get(c.sandbox_id.as_str())
            .copied()
            .unwrap_or_default();
        *counts
            .containers
            .entry((state.into(), handler.into()))
            .or_default() += 1;
    }
    counts
}
