//! Pod sandbox and container records, and the ContainerIds they hold.
//!
//! A record and its ContainerId are written in one transaction, so an id is never
//! allocated without its record nor a record stored without its id. Inserting runs a
//! caller's check (unique names, the id choice) inside the transaction, on a
//! [`Snapshot`] of what is recorded, so two concurrent creations cannot both pass it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use runtimes::ContainerId;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::index::{Index, Indexed};
use super::records::{ContainerPhase, ContainerRecord, SandboxPhase, SandboxRecord};
use super::tables::{CONTAINERS, CONTAINER_IDS, SANDBOXES};
use super::{into_runtime, Store};
use crate::error::{Error, Result};

/// The table a kind of record lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Pod sandboxes.
    Sandboxes,
    /// Containers.
    Containers,
}

impl Table {
    fn definition(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        match self {
            Table::Sandboxes => SANDBOXES,
            Table::Containers => CONTAINERS,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Table::Sandboxes => "sandboxes",
            Table::Containers => "containers",
        }
    }
}

/// A record kept per CRI object.
pub trait Record: Serialize + DeserializeOwned + Clone {
    /// Its table.
    const TABLE: Table;
    /// What CRI calls it, for messages: `pod sandbox` or `container`.
    const KIND: &'static str;
    /// Its CRI id.
    fn id(&self) -> &str;
    /// Its ContainerId.
    fn container_id(&self) -> &ContainerId;
    /// True while its creation is in flight (or was cut short by a crash).
    fn is_creating(&self) -> bool;
    /// kubelet's labels.
    fn labels(&self) -> &HashMap<String, String>;
    /// Its sandbox's CRI id (containers only).
    fn sandbox(&self) -> Option<&str>;
    /// Its part of the listing index.
    fn part(index: &Index) -> &Indexed<Self>;
    /// Its part of the listing index, to change.
    fn part_mut(index: &mut Index) -> &mut Indexed<Self>;
}

impl Record for SandboxRecord {
    const TABLE: Table = Table::Sandboxes;
    const KIND: &'static str = "pod sandbox";

    fn id(&self) -> &str {
        &self.id
    }

    fn container_id(&self) -> &ContainerId {
        &self.container_id
    }

    fn is_creating(&self) -> bool {
        self.phase == SandboxPhase::Creating
    }

    fn labels(&self) -> &HashMap<String, String> {
        &self.config.labels
    }

    fn sandbox(&self) -> Option<&str> {
        None
    }

    fn part(index: &Index) -> &Indexed<Self> {
        &index.sandboxes
    }

    fn part_mut(index: &mut Index) -> &mut Indexed<Self> {
        &mut index.sandboxes
    }
}

impl Record for ContainerRecord {
    const TABLE: Table = Table::Containers;
    const KIND: &'static str = "container";

    fn id(&self) -> &str {
        &self.id
    }

    fn container_id(&self) -> &ContainerId {
        &self.container_id
    }

    fn is_creating(&self) -> bool {
        self.phase == ContainerPhase::Creating
    }

    fn labels(&self) -> &HashMap<String, String> {
        &self.config.labels
    }

    fn sandbox(&self) -> Option<&str> {
        Some(&self.sandbox_id)
    }

    fn part(index: &Index) -> &Indexed<Self> {
        &index.containers
    }

    fn part_mut(index: &mut Index) -> &mut Indexed<Self> {
        &mut index.containers
    }
}

/// What is recorded, as an insertion's check sees it.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every ContainerId in use.
    pub allocated: BTreeSet<ContainerId>,
    /// Every sandbox, `Creating` ones included.
    pub sandboxes: Vec<SandboxRecord>,
    /// Every container, `Creating` ones included.
    pub containers: Vec<ContainerRecord>,
}

impl Store {
    /// Every record of kind `R`, `Creating` ones included, in CRI id order.
    pub fn list<R: Record>(&self) -> runtimes::Result<Vec<R>> {
        let table = R::TABLE;
        let raw = self
            .read(|txn| raw_records(&txn.open_table(table.definition())?))
            .map_err(into_runtime)?;
        raw.iter()
            .map(|(key, bytes)| self.decode(table, key, bytes))
            .collect::<Result<_>>()
            .map_err(into_runtime)
    }

    /// The record of kind `R` with CRI id `id`.
    pub fn get<R: Record>(&self, id: &str) -> runtimes::Result<Option<R>> {
        let table = R::TABLE;
        let raw = self
            .read(|txn| {
                let t = txn.open_table(table.definition())?;
                let bytes = t.get(id)?.map(|v| v.value().to_vec());
                Ok(bytes)
            })
            .map_err(into_runtime)?;
        raw.map(|bytes| self.decode(table, id, &bytes))
            .transpose()
            .map_err(into_runtime)
    }

    /// Records what `build` makes of the current [`Snapshot`], and its ContainerId. When
    /// `build` refuses, nothing is written and its error (of the caller's type) is
    /// returned.
    pub fn insert<R: Record, E: From<runtimes::Error>>(
        &self,
        build: impl FnOnce(&Snapshot) -> Result<R, E>,
    ) -> Result<R, E> {
        let _writer = self.writer();
        let inserted = self
            .write_checked(|txn| {
                let snapshot = self.snapshot(txn)?;
                let record = match build(&snapshot) {
                    Ok(record) => record,
                    Err(refused) => return Ok(Err(refused)),
                };
                let key = record.container_id().to_string();
                if snapshot.allocated.contains(record.container_id()) {
                    return Ok(Err(runtimes::Error::backend(
                        "state store",
                        format!("ContainerId {key} is already allocated"),
                    )
                    .into()));
                }
                let mut table = txn
                    .open_table(R::TABLE.definition())
                    .map_err(|e| self.error(e))?;
                let exists = table.get(record.id()).map_err(|e| self.error(e))?.is_some();
                if exists {
                    return Ok(Err(runtimes::Error::AlreadyExists {
                        kind: R::KIND,
                        id: record.id().to_string(),
                    }
                    .into()));
                }
                let bytes = self.encode(R::TABLE, record.id(), &record)?;
                table
                    .insert(record.id(), bytes.as_slice())
                    .map_err(|e| self.error(e))?;
                let mut ids = txn.open_table(CONTAINER_IDS).map_err(|e| self.error(e))?;
                ids.insert(key.as_str(), record.id())
                    .map_err(|e| self.error(e))?;
                Ok(Ok(record))
            })
            .map_err(|e| E::from(into_runtime(e)))?;
        if let Ok(record) = &inserted {
            self.indexed(|index| index.put(record.clone()));
        }
        inserted
    }

    /// Applies `change` to the record `id` and stores it; `None` when there is no such
    /// record. The CRI id and the ContainerId must not change.
    pub fn update<R: Record>(
        &self,
        id: &str,
        change: impl FnOnce(&mut R),
    ) -> runtimes::Result<Option<R>> {
        let _writer = self.writer();
        let updated = self
            .write_checked(|txn| {
                let mut table = txn
                    .open_table(R::TABLE.definition())
                    .map_err(|e| self.error(e))?;
                let bytes = table
                    .get(id)
                    .map_err(|e| self.error(e))?
                    .map(|v| v.value().to_vec());
                let Some(bytes) = bytes else {
                    return Ok(Ok(None));
                };
                let mut record: R = self.decode(R::TABLE, id, &bytes)?;
                let before = record.container_id().clone();
                change(&mut record);
                if record.id() != id || *record.container_id() != before {
                    return Ok(Err(runtimes::Error::backend(
                        "state store",
                        format!("an update of {} {id} changed its identity", R::KIND),
                    )));
                }
                let bytes = self.encode(R::TABLE, id, &record)?;
                table
                    .insert(id, bytes.as_slice())
                    .map_err(|e| self.error(e))?;
                Ok(Ok(Some(record)))
            })
            .map_err(into_runtime)??;
        if let Some(record) = &updated {
            self.indexed(|index| index.put(record.clone()));
        }
        Ok(updated)
    }

    /// Deletes the record `id` and releases its ContainerId; deleting an absent record
    /// succeeds.
    pub fn remove<R: Record>(&self, id: &str) -> runtimes::Result<()> {
        let _writer = self.writer();
        self.write_checked(|txn| {
            self.remove_in::<R>(txn, id)?;
            Ok(Ok::<(), runtimes::Error>(()))
        })
        .map_err(into_runtime)??;
        self.indexed(|index| index.drop_record::<R>(id));
        Ok(())
    }

    /// Deletes the pod sandbox `sandbox` and the containers `containers` with their
    /// ContainerIds, in one transaction (RemovePodSandbox: one commit, one fsync, and
    /// never a pod left with half its containers).
    pub fn remove_pod(&self, sandbox: &str, containers: &[String]) -> runtimes::Result<()> {
        let _writer = self.writer();
        self.write_checked(|txn| {
            for id in containers {
                self.remove_in::<ContainerRecord>(txn, id)?;
            }
            self.remove_in::<SandboxRecord>(txn, sandbox)?;
            Ok(Ok::<(), runtimes::Error>(()))
        })
        .map_err(into_runtime)??;
        self.indexed(|index| {
            for id in containers {
                index.drop_record::<ContainerRecord>(id);
            }
            index.drop_record::<SandboxRecord>(sandbox);
        });
        Ok(())
    }

    /// [`Store::remove`] inside `txn`.
    fn remove_in<R: Record>(&self, txn: &WriteTransaction, id: &str) -> Result<()> {
        let removed = txn
            .open_table(R::TABLE.definition())
            .map_err(redb::Error::from)
            .and_then(|mut t| Ok(t.remove(id)?.map(|v| v.value().to_vec())))
            .map_err(|e| self.error(e))?;
        if let Some(bytes) = removed {
            let record: R = self.decode(R::TABLE, id, &bytes)?;
            let key = record.container_id().to_string();
            let mut ids = txn.open_table(CONTAINER_IDS).map_err(|e| self.error(e))?;
            let holder = ids
                .get(key.as_str())
                .map_err(|e| self.error(e))?
                .map(|v| v.value().to_string());
            if holder.as_deref() == Some(id) {
                ids.remove(key.as_str()).map_err(|e| self.error(e))?;
            }
        }
        Ok(())
    }

    /// Every allocated ContainerId → the CRI id holding it.
    pub fn allocated_ids(&self) -> runtimes::Result<BTreeMap<ContainerId, String>> {
        let raw = self
            .read(|txn| {
                let t = txn.open_table(CONTAINER_IDS)?;
                let mut out = Vec::new();
                for entry in t.iter()? {
                    let (k, v) = entry?;
                    out.push((k.value().to_string(), v.value().to_string()));
                }
                Ok(out)
            })
            .map_err(into_runtime)?;
        raw.into_iter()
            .map(|(key, holder)| {
                self.parse_id(&key)
                    .map(|id| (id, holder))
                    .map_err(into_runtime)
            })
            .collect()
    }

    fn snapshot(&self, txn: &WriteTransaction) -> Result<Snapshot> {
        let raw = |t: Table| {
            txn.open_table(t.definition())
                .map_err(redb::Error::from)
                .and_then(|table| raw_records(&table))
                .map_err(|e| self.error(e))
        };
        let sandboxes = raw(Table::Sandboxes)?
            .iter()
            .map(|(k, b)| self.decode(Table::Sandboxes, k, b))
            .collect::<Result<_>>()?;
        let containers = raw(Table::Containers)?
            .iter()
            .map(|(k, b)| self.decode(Table::Containers, k, b))
            .collect::<Result<_>>()?;
        let ids = txn.open_table(CONTAINER_IDS).map_err(|e| self.error(e))?;
        let mut allocated = BTreeSet::new();
        for entry in ids.iter().map_err(|e| self.error(e))? {
            let (key, _) = entry.map_err(|e| self.error(e))?;
            allocated.insert(self.parse_id(key.value())?);
        }
        Ok(Snapshot {
            allocated,
            sandboxes,
            containers,
        })
    }

    fn parse_id(&self, key: &str) -> Result<ContainerId> {
        ContainerId::parse_display(key).ok_or_else(|| Error::StoreCorrupt {
            path: self.path.clone(),
            table: "container_ids".to_string(),
            key: key.to_string(),
            why: "the key is not a ContainerId".to_string(),
        })
    }

    fn decode<R: DeserializeOwned>(&self, table: Table, key: &str, bytes: &[u8]) -> Result<R> {
        serde_json::from_slice(bytes).map_err(|e| self.corrupt(table, key, e.to_string()))
    }

    fn encode<R: Serialize>(&self, table: Table, key: &str, record: &R) -> Result<Vec<u8>> {
        serde_json::to_vec(record)
            .map_err(|e| self.corrupt(table, key, format!("the record cannot be encoded: {e}")))
    }

    fn corrupt(&self, table: Table, key: &str, why: String) -> Error {
        Error::StoreCorrupt {
            path: self.path.clone(),
            table: table.name().to_string(),
            key: key.to_string(),
            why,
        }
    }
}

/// Every (key, value) of a record table.
fn raw_records(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<(String, Vec<u8>)>, redb::Error> {
    let mut out = Vec::new();
    for entry in table.iter()? {
        let (key, value) = entry?;
        out.push((key.value().to_string(), value.value().to_vec()));
    }
    Ok(out)
}
