//! CompositeRuntime's dispatch records: which backend holds each pod sandbox and
//! container, so a restarted berth routes every later call to the same backend.

use redb::{ReadableTable, ReadableTableMetadata, TableHandle};
use runtimes::{ContainerId, DispatchLog};

use super::tables::DISPATCH;
use super::Store;
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

/// A store failure as the runtime layer reports it: a disk error stays an I/O error,
/// unreadable content is data loss, anything else is an internal failure of the store.
fn into_runtime(err: Error) -> runtimes::Error {
    const STORE: &str = "state store";
    match err {
        Error::Store {
            path,
            source: redb::Error::Io(source),
        } => runtimes::Error::io(format!("{STORE} {}", path.display()), source),
        Error::Store {
            path,
            source: redb::Error::Corrupted(message),
        } => runtimes::Error::DataLoss {
            what: format!("{STORE} {}", path.display()),
            message,
        },
        err @ Error::StoreCorrupt { .. } => runtimes::Error::DataLoss {
            what: STORE.to_string(),
            message: err.to_string(),
        },
        err => runtimes::Error::backend(STORE, err),
    }
}
