//! berth's persistent state: one embedded transactional database (redb) at
//! `<state_dir>/state.redb`.
//!
//! Each kind of record has a table in [`tables`] and typed accessors in its own file
//! (`objects.rs` for pod sandboxes and containers, `routes.rs` for their backends); callers never see
//! redb types. Transactions are short and never
//! span a backend call: record the intent, commit, call the backend, then record the
//! outcome. Every commit is durable before it returns.

mod index;
mod objects;
mod records;
mod routes;
mod tables;

pub use index::{Index, Indexed, Query};
pub use objects::{Record, Snapshot, Table};
pub use records::{ContainerPhase, ContainerRecord, SandboxPhase, SandboxRecord};

use std::fs::DirBuilder;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard};

use redb::{
    Database, DatabaseError, ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction,
};

use crate::error::{Error, Result};

/// The database file's name inside `state_dir`.
pub const STORE_FILE: &str = "state.redb";

/// The state store. Cheap to share behind an `Arc`; redb serializes writers.
pub struct Store {
    db: Database,
    path: PathBuf,
    /// The records in memory, for listings (see [`index`]).
    index: RwLock<Index>,
    /// Held by each write of records from before its transaction to after the index
    /// took its outcome, so the index applies commits in their order.
    writer: Mutex<()>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (or creates) the store in `state_dir`, creating the directory with mode
    /// 0711 when missing (adding the traverse bits to an existing one): others may pass through but not list it, as a container's
    /// root in a pod user namespace must to reach its rootfs below (containerd's root
    /// dir is 0711 for the same reason). Fails with [`Error::StoreInUse`] when another process has it
    /// open and with [`Error::StoreSchema`] when a newer berth wrote it.
    pub fn open(state_dir: &Path) -> Result<Store> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(state_dir)
            .map_err(|e| Error::io(format!("creating state_dir {}", state_dir.display()), e))?;
        // A state dir an older berth made 0700 gains the traverse bits; nothing else
        // of the operator's mode changes.
        let mode = std::fs::metadata(state_dir)
            .map_err(|e| Error::io(format!("reading state_dir {}", state_dir.display()), e))?
            .permissions()
            .mode();
        if mode & 0o011 != 0o011 {
            std::fs::set_permissions(state_dir, std::fs::Permissions::from_mode(mode | 0o011))
                .map_err(|e| Error::io(format!("chmod state_dir {}", state_dir.display()), e))?;
        }
        let path = state_dir.join(STORE_FILE);
        let db = Database::create(&path).map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => Error::StoreInUse { path: path.clone() },
            e => Error::Store {
                path: path.clone(),
                source: e.into(),
            },
        })?;
        let store = Store {
            db,
            path,
            index: RwLock::default(),
            writer: Mutex::default(),
        };
        store.prepare()?;
        store.build_index();
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks the schema version and creates every table, so readers never meet a
    /// missing table.
    fn prepare(&self) -> Result<()> {
        let found = self.write(|txn| {
            let mut meta = txn.open_table(tables::META)?;
            let found = meta.get(tables::SCHEMA_VERSION_KEY)?.map(|v| v.value());
            if found.is_none_or(|v| v <= tables::SCHEMA_VERSION) {
                txn.open_table(tables::SANDBOXES)?;
                txn.open_table(tables::CONTAINERS)?;
                txn.open_table(tables::CONTAINER_IDS)?;
                // In the same transaction as the new version: a crash migrates again.
                if found.is_some_and(|v| v < 2) {
                    routes::migrate_dispatch(txn)?;
                }
                meta.insert(tables::SCHEMA_VERSION_KEY, tables::SCHEMA_VERSION)?;
            }
            Ok(found)
        })?;
        match found {
            Some(found) if found > tables::SCHEMA_VERSION => Err(Error::StoreSchema {
                path: self.path.clone(),
                found,
                supported: tables::SCHEMA_VERSION,
            }),
            _ => Ok(()),
        }
    }

    /// The writer lock (its field says why).
    fn writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `f` to the index: records only after their commit, under the writer
    /// lock.
    fn indexed(&self, f: impl FnOnce(&mut Index)) {
        f(&mut self.index.write().unwrap_or_else(|p| p.into_inner()));
    }

    /// The index, to read.
    fn index(&self) -> RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in a read transaction (a consistent snapshot).
    fn read<T>(&self, f: impl FnOnce(&ReadTransaction) -> Result<T, redb::Error>) -> Result<T> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        f(&txn).map_err(|e| self.error(e))
    }

    /// Runs `f` in a write transaction and commits it; when `f` fails nothing is written.
    fn write<T>(&self, f: impl FnOnce(&WriteTransaction) -> Result<T, redb::Error>) -> Result<T> {
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        // Dropping an uncommitted transaction aborts it.
        let value = f(&txn).map_err(|e| self.error(e))?;
        txn.commit().map_err(|e| self.error(e))?;
        Ok(value)
    }

    /// Runs `f` in a write transaction and commits it only when `f` returns
    /// `Ok(Ok(_))`: `Ok(Err(_))` is a refusal (the request's fault) that writes nothing,
    /// like an `Err(_)` failure of the store.
    fn write_checked<T, E>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<Result<T, E>>,
    ) -> Result<Result<T, E>> {
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        match f(&txn)? {
            Ok(value) => {
                txn.commit().map_err(|e| self.error(e))?;
                Ok(Ok(value))
            }
            Err(refused) => {
                txn.abort().map_err(|e| self.error(e))?;
                Ok(Err(refused))
            }
        }
    }

    fn error(&self, source: impl Into<redb::Error>) -> Error {
        Error::Store {
            path: self.path.clone(),
            source: source.into(),
        }
    }
}

/// A store failure as the runtime layer reports it: a disk error stays an I/O error,
/// unreadable content is data loss, anything else is an internal failure of the store.
pub(super) fn into_runtime(err: Error) -> runtimes::Error {
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

#[cfg(test)]
mod tests;
