//! berth's persistent state: one embedded transactional database (redb) at
//! `<state_dir>/state.redb`.
//!
//! Each kind of record has a table in [`tables`] and typed accessors in its own file
//! (`dispatch.rs`); callers never see redb types. Transactions are short and never
//! span a backend call: record the intent, commit, call the backend, then record the
//! outcome. Every commit is durable before it returns.

mod dispatch;
mod tables;

use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

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
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (or creates) the store in `state_dir`, creating the directory with mode
    /// 0700 when missing. Fails with [`Error::StoreInUse`] when another process has it
    /// open and with [`Error::StoreSchema`] when a newer berth wrote it.
    pub fn open(state_dir: &Path) -> Result<Store> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(|e| Error::io(format!("creating state_dir {}", state_dir.display()), e))?;
        let path = state_dir.join(STORE_FILE);
        let db = Database::create(&path).map_err(|e| match e {
            DatabaseError::DatabaseAlreadyOpen => Error::StoreInUse { path: path.clone() },
            e => Error::Store {
                path: path.clone(),
                source: e.into(),
            },
        })?;
        let store = Store { db, path };
        store.prepare()?;
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
                meta.insert(tables::SCHEMA_VERSION_KEY, tables::SCHEMA_VERSION)?;
                txn.open_table(tables::DISPATCH)?;
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

    fn error(&self, source: impl Into<redb::Error>) -> Error {
        Error::Store {
            path: self.path.clone(),
            source: source.into(),
        }
    }
}

#[cfg(test)]
mod tests;
