//! CompositeRuntime's dispatch records: which backend holds each pod sandbox and
//! container, so a restarted berth routes every later call to the same backend.

use redb::{ReadableTable, ReadableTableMetadata, TableHandle};
use runtimes::{ContainerId, DispatchLog};

use super::tables::DISPATCH;
use super::{into_runtime, Store};
use crate::error::{Error, Result};

impl Store {
    /// Every dispatch record, ordered by id.
    pub fn dispatch_records(&self) -> Result<Vec<(ContainerId, String)>> {
        let raw = self.read(|txn| {
            let table = txn.open_table(DISPATCH)?;
            let mut raw = Vec::with_capacity(usize::try_from(table.len()?).unwrap_or(0));
            for entry in table.iter()? {
                let (id, backend) = entry?;
                raw.push((id.value().to_string(), backend.value().to_string()));
            }
            Ok(raw)
        })?;
        raw.into_iter()
            .map(|(key, backend)| match ContainerId::parse_display(&key) {
                Some(id) => Ok((id, backend)),
                None => Err(Error::StoreCorrupt {
                    path: self.path.clone(),
                    table: DISPATCH.name().to_string(),
                    key,
                    why: "the key is not a ContainerId".to_string(),
                }),
            })
            .collect()
    }

    /// Records (or replaces) the backend that holds `id`.
    pub fn record_dispatch(&self, id: &ContainerId, backend: &str) -> Result<()> {
        let key = id.to_string();
        self.write(|txn| {
            txn.open_table(DISPATCH)?.insert(key.as_str(), backend)?;
            Ok(())
        })
    }

    /// Drops the record of `id`; dropping an absent record succeeds.
    pub fn forget_dispatch(&self, id: &ContainerId) -> Result<()> {
        let key = id.to_string();
        self.write(|txn| {
            txn.open_table(DISPATCH)?.remove(key.as_str())?;
            Ok(())
        })
    }
}

impl DispatchLog for Store {
    fn load(&self) -> runtimes::Result<Vec<(ContainerId, String)>> {
        self.dispatch_records().map_err(into_runtime)
    }

    fn record(&self, id: &ContainerId, backend: &str) -> runtimes::Result<()> {
        self.record_dispatch(id, backend).map_err(into_runtime)
    }

    fn forget(&self, id: &ContainerId) -> runtimes::Result<()> {
        self.forget_dispatch(id).map_err(into_runtime)
    }
}
