//! The listing index: every sandbox and container record in memory, looked up by CRI
//! id (and id prefix), by sandbox and by label, so `ListPodSandbox` and
//! `ListContainers` (kubelet's PLEG calls both every second) read no table and decode
//! no JSON, and a filter costs what it matches, not the number of pods.
//!
//! It is built from the tables when the store opens and changed only by the store's
//! own writes (`insert`, `update`, `remove`, `remove_pod`), after their commit and
//! under the store's writer lock, so it holds exactly what is committed, in commit
//! order. Next to the records it keeps the state each container's backend last
//! reported, with the backend's generation it was read at
//! ([`runtimes::Runtime::state_generation`]; not persisted: unknown after a restart
//! until a listing asks), and likewise the generation at which each pod recorded
//! ready was last seen ready by its backend.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use runtimes::types::ContainerState;

use super::objects::{Record, Table};
use super::records::{ContainerRecord, SandboxRecord};
use super::Store;
use crate::identity::CONTAINER_ID_LABEL;

/// One kind of record, indexed.
#[derive(Debug)]
pub struct Indexed<R> {
    /// Every record (`Creating` ones too), by CRI id.
    records: BTreeMap<String, Arc<R>>,
    /// CRI ids by (label, value) of kubelet's labels.
    by_label: HashMap<(String, String), BTreeSet<String>>,
    /// CRI id by ContainerId (display form): the label berth adds.
    by_container_id: HashMap<String, String>,
    /// Container CRI ids by the CRI id of their sandbox (empty for sandboxes).
    by_sandbox: BTreeMap<String, BTreeSet<String>>,
    /// Why the table could not be read when the store opened: every query fails
    /// with it, as reading the table did.
    broken: Option<String>,
}

impl<R> Default for Indexed<R> {
    fn default() -> Self {
        Self {
            records: BTreeMap::new(),
            by_label: HashMap::new(),
            by_container_id: HashMap::new(),
            by_sandbox: BTreeMap::new(),
            broken: None,
        }
    }
}

/// What a listing asks for: each field empty matches everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Query<'a> {
    /// A prefix of the CRI id.
    pub id: &'a str,
    /// A prefix of the sandbox's CRI id (containers only).
    pub sandbox: &'a str,
    /// Labels that must all be shown (kubelet's and the ContainerId label).
    pub labels: Option<&'a HashMap<String, String>>,
}

/// A container's state as its backend last reported it, and the backend's state
/// generation it was read at (`None`: the backend has none).
pub type KnownState = (ContainerState, Option<u64>);

/// The records of the store, indexed, and the containers' last known states.
#[derive(Debug, Default)]
pub struct Index {
    pub(super) sandboxes: Indexed<SandboxRecord>,
    pub(super) containers: Indexed<ContainerRecord>,
    states: HashMap<String, KnownState>,
    /// The backend's state generation at which each pod (by CRI id) recorded ready
    /// was last seen ready by it; dropped with any change of its record.
    ready_at: HashMap<String, u64>,
}

impl Index {
    /// Puts `record` in place of what was indexed under its CRI id.
    pub(super) fn put<R: Record>(&mut self, record: R) {
        if R::TABLE == Table::Sandboxes {
            self.ready_at.remove(record.id());
        }
        let part = R::part_mut(self);
        part.unlink(record.id());
        part.link(Arc::new(record));
    }

    /// Drops the record `id` of kind `R` (and a container's state).
    pub(super) fn drop_record<R: Record>(&mut self, id: &str) {
        R::part_mut(self).unlink(id);
        match R::TABLE {
            Table::Containers => {
                self.states.remove(id);
            }
            Table::Sandboxes => {
                self.ready_at.remove(id);
            }
        }
    }

    /// Marks `R`'s part broken: queries fail with `why`.
    pub(super) fn break_part<R: Record>(&mut self, why: String) {
        R::part_mut(self).broken = Some(why);
    }

    /// The last state recorded for container `id`.
    pub(super) fn state(&self, id: &str) -> Option<KnownState> {
        self.states.get(id).copied()
    }

    /// True when the pod `id` is indexed as this very version of its record, so what
    /// its backend said about it was said about what is committed.
    fn is_current(&self, id: &str, record: &Arc<SandboxRecord>) -> bool {
        self.sandboxes
            .records
            .get(id)
            .is_some_and(|r| Arc::ptr_eq(r, record))
    }

    /// Records `state`, read at `generation`, for container `id`, if it is indexed.
    pub(super) fn set_state(&mut self, id: &str, state: ContainerState, generation: Option<u64>) {
        // An exit is for good: a late answer from before it does not undo it.
        let exited = self.state(id).map(|(s, _)| s) == Some(ContainerState::Exited);
        if self.containers.records.contains_key(id) && !exited {
            self.states.insert(id.to_string(), (state, generation));
        }
    }
}

impl<R: Record> Indexed<R> {
    fn link(&mut self, record: Arc<R>) {
        let id = record.id().to_string();
        for (k, v) in record.labels() {
            self.by_label
                .entry((k.clone(), v.clone()))
                .or_default()
                .insert(id.clone());
        }
        self.by_container_id
            .insert(record.container_id().to_string(), id.clone());
        if let Some(sandbox) = record.sandbox() {
            self.by_sandbox
                .entry(sandbox.to_string())
                .or_default()
                .insert(id.clone());
        }
        self.records.insert(id, record);
    }

    fn unlink(&mut self, id: &str) {
        let Some(record) = self.records.remove(id) else {
            return;
        };
        for (k, v) in record.labels() {
            let key = (k.clone(), v.clone());
            if let Some(ids) = self.by_label.get_mut(&key) {
                ids.remove(id);
                if ids.is_empty() {
                    self.by_label.remove(&key);
                }
            }
        }
        let cid = record.container_id().to_string();
        if self.by_container_id.get(&cid).map(String::as_str) == Some(id) {
            self.by_container_id.remove(&cid);
        }
        if let Some(sandbox) = record.sandbox() {
            if let Some(ids) = self.by_sandbox.get_mut(sandbox) {
                ids.remove(id);
                if ids.is_empty() {
                    self.by_sandbox.remove(sandbox);
                }
            }
        }
    }

    /// The failure of a part that could not be read.
    pub(super) fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// Every record, `Creating` ones too, in CRI id order.
    pub(super) fn all(&self) -> impl Iterator<Item = &Arc<R>> {
        self.records.values()
    }

    /// The records whose creation finished and that `query` matches, in CRI id order.
    /// The candidates come from the narrowest lookup the query allows (one sandbox's
    /// containers, one label's holders, an id prefix's range), then every condition
    /// is checked on them.
    pub(super) fn query(&self, query: &Query) -> Vec<Arc<R>> {
        let mut candidates: Option<BTreeSet<&str>> = None;
        for (k, v) in query.labels.into_iter().flatten() {
            let ids: BTreeSet<&str> = if k == CONTAINER_ID_LABEL {
                self.by_container_id
                    .get(v)
                    .map(String::as_str)
                    .into_iter()
                    .collect()
            } else {
                self.by_label
                    .get(&(k.clone(), v.clone()))
                    .map(|ids| ids.iter().map(String::as_str).collect())
                    .unwrap_or_default()
            };
            narrow(&mut candidates, ids);
        }
        if !query.sandbox.is_empty() {
            narrow(
                &mut candidates,
                prefixed(&self.by_sandbox, query.sandbox)
                    .flat_map(|(_, ids)| ids.iter().map(String::as_str))
                    .collect(),
            );
        }
        if !query.id.is_empty() {
            narrow(
                &mut candidates,
                prefixed(&self.records, query.id)
                    .map(|(id, _)| id.as_str())
                    .collect(),
            );
        }
        let matches = |r: &&Arc<R>| {
            !r.is_creating()
                && r.id().starts_with(query.id)
                && r.sandbox().unwrap_or_default().starts_with(query.sandbox)
                && query.labels.into_iter().flatten().all(|(k, v)| {
                    if k == CONTAINER_ID_LABEL {
                        *v == r.container_id().to_string()
                    } else {
                        r.labels().get(k) == Some(v)
                    }
                })
        };
        match candidates {
            Some(ids) => ids
                .into_iter()
                .filter_map(|id| self.records.get(id))
                .filter(matches)
                .cloned()
                .collect(),
            None => self.records.values().filter(matches).cloned().collect(),
        }
    }
}

/// Keeps `ids` as the candidates when they are fewer than those kept so far.
fn narrow<'a>(candidates: &mut Option<BTreeSet<&'a str>>, ids: BTreeSet<&'a str>) {
    if candidates.as_ref().is_none_or(|c| ids.len() < c.len()) {
        *candidates = Some(ids);
    }
}

/// The entries of `map` whose key starts with `prefix`.
fn prefixed<'m, V>(
    map: &'m BTreeMap<String, V>,
    prefix: &'m str,
) -> impl Iterator<Item = (&'m String, &'m V)> {
    map.range::<str, _>((
        std::ops::Bound::Included(prefix),
        std::ops::Bound::Unbounded,
    ))
    .take_while(move |(k, _)| k.starts_with(prefix))
}

impl Store {
    /// Fills the index from the tables (at open, after any migration). A table that
    /// cannot be read leaves its part failing every query with the reason, as reading
    /// the table did.
    pub(super) fn build_index(&self) {
        let mut index = Index::default();
        fill::<SandboxRecord>(&mut index, self.list::<SandboxRecord>());
        fill::<ContainerRecord>(&mut index, self.list::<ContainerRecord>());
        self.indexed(|i| *i = index);
    }

    /// The records of kind `R` whose creation finished and that `query` matches, in
    /// CRI id order, from memory.
    pub fn query<R: Record>(&self, query: &Query) -> runtimes::Result<Vec<Arc<R>>> {
        let index = self.index();
        let part = R::part(&index);
        if let Some(why) = part.broken() {
            return Err(runtimes::Error::DataLoss {
                what: "state store".to_string(),
                message: why.to_string(),
            });
        }
        Ok(part.query(query))
    }

    /// Every indexed record of kind `R`, `Creating` ones too, in CRI id order (what
    /// [`Store::list`] reads from the table).
    pub fn indexed_records<R: Record>(&self) -> Vec<R> {
        R::part(&self.index()).all().map(|r| R::clone(r)).collect()
    }

    /// Visits every indexed pod sandbox, then every container with the state last
    /// recorded for it, `Creating` ones too, under one read of the index and without
    /// copying a record (what a metrics scrape counts). The visitors must not call the
    /// store.
    pub fn visit(
        &self,
        mut pod: impl FnMut(&SandboxRecord),
        mut container: impl FnMut(&ContainerRecord, Option<ContainerState>),
    ) {
        let index = self.index();
        index.sandboxes.all().for_each(|r| pod(r));
        for r in index.containers.all() {
            container(r, index.state(&r.id).map(|(state, _)| state));
        }
    }

    /// The state last recorded for each of the containers `ids`, with the generation
    /// it was read at (`None`: not known).
    pub fn container_states(&self, ids: &[&str]) -> Vec<Option<KnownState>> {
        let index = self.index();
        ids.iter().map(|id| index.state(id)).collect()
    }

    /// For each of the pods `records`, true when that version of its record (still
    /// the one indexed) was seen ready by its backend at `generation`, the backend's
    /// state generation now: nothing it depends on moved since, so it still is.
    pub fn pods_ready_at(&self, records: &[Arc<SandboxRecord>], generation: u64) -> Vec<bool> {
        let index = self.index();
        records
            .iter()
            .map(|r| index.is_current(&r.id, r) && index.ready_at.get(&r.id) == Some(&generation))
            .collect()
    }

    /// Records that the backend saw the pod `record` ready at its state `generation`
    /// (read before asking); ignored unless `record` is still what is indexed (a
    /// change or removal raced the listing that asked).
    pub fn set_pod_ready_at(&self, record: &Arc<SandboxRecord>, generation: u64) {
        self.indexed(|index| {
            if index.is_current(&record.id, record) {
                index.ready_at.insert(record.id.clone(), generation);
            }
        });
    }

    /// Records the state the backend reported for container `id`, read at the
    /// backend's state `generation`; ignored once its record is gone (a removal raced
    /// the listing that asked).
    pub fn set_container_state(&self, id: &str, state: ContainerState, generation: Option<u64>) {
        self.indexed(|index| index.set_state(id, state, generation));
    }
}

fn fill<R: Record>(index: &mut Index, records: runtimes::Result<Vec<R>>) {
    match records {
        Ok(records) => records.into_iter().for_each(|r| index.put(r)),
        Err(e) => index.break_part::<R>(e.to_string()),
    }
}
