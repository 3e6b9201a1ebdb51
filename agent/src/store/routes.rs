//! Which backend holds each pod sandbox and container: the sandbox record names it,
//! its containers go where it went. The composite is handed these routes at start-up,
//! so a restarted berth sends every call to the same backend.

use std::collections::HashMap;

use redb::{ReadableTable, WriteTransaction};
use runtimes::ContainerId;

use super::records::{ContainerRecord, SandboxRecord};
use super::tables::{DISPATCH, SANDBOXES};
use super::Store;

impl Store {
    /// ContainerId → backend name of every sandbox that names its backend, and of
    /// every container of one.
    pub fn routes(&self) -> runtimes::Result<Vec<(ContainerId, String)>> {
        let sandboxes = self.list::<SandboxRecord>()?;
        let backend_of: HashMap<&str, &str> = sandboxes
            .iter()
            .filter(|s| !s.backend.is_empty())
            .map(|s| (s.id.as_str(), s.backend.as_str()))
            .collect();
        let mut routes: Vec<(ContainerId, String)> = sandboxes
            .iter()
            .filter(|s| !s.backend.is_empty())
            .map(|s| (s.container_id.clone(), s.backend.clone()))
            .collect();
        for container in self.list::<ContainerRecord>()? {
            if let Some(backend) = backend_of.get(container.sandbox_id.as_str()) {
                routes.push((container.container_id, backend.to_string()));
            }
        }
        Ok(routes)
    }
}

/// Schema 1 → 2: names the backend in every sandbox record from the dispatch table
/// the composite used to write (containers need no entry: they follow their sandbox).
/// A record that does not decode is left as it is, for its reader to report.
pub(super) fn migrate_dispatch(txn: &WriteTransaction) -> Result<(), redb::Error> {
    let dispatch: HashMap<String, String> = {
        let table = txn.open_table(DISPATCH)?;
        let mut map = HashMap::new();
        for entry in table.iter()? {
            let (id, backend) = entry?;
            map.insert(id.value().to_string(), backend.value().to_string());
        }
        map
    };
    let mut sandboxes = txn.open_table(SANDBOXES)?;
    let mut patched = Vec::new();
    for entry in sandboxes.iter()? {
        let (key, bytes) = entry?;
        let Ok(mut record) = serde_json::from_slice::<SandboxRecord>(bytes.value()) else {
            continue;
        };
        if !record.backend.is_empty() {
            continue;
        }
        if let Some(backend) = dispatch.get(&record.container_id.to_string()) {
            record.backend = backend.clone();
            if let Ok(bytes) = serde_json::to_vec(&record) {
                patched.push((key.value().to_string(), bytes));
            }
        }
    }
    for (key, bytes) in patched {
        sandboxes.insert(key.as_str(), bytes.as_slice())?;
    }
    Ok(())
}
