//! What the pod and container verbs share: finding a record by CRI id (or a unique
//! prefix, like containerd), filters, CRI ids and timestamps.

use std::collections::HashMap;
use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use runtimes::{ContainerId, Error};

use crate::identity::CONTAINER_ID_LABEL;
use crate::store::{ContainerRecord, Query, Record, Store, Table};
use crate::telemetry::{self, CallField};

/// The record `id` names: its CRI id, or a prefix of exactly one. Records whose creation
/// is in flight do not exist yet for CRI. Unknown → `NotFound`; empty or ambiguous →
/// `InvalidSpec`, naming `method`.
pub(in crate::cri) fn resolve<R: Record>(
    store: &Store,
    method: &str,
    id: &str,
) -> runtimes::Result<R> {
    find(store, method, id)?.ok_or_else(|| Error::not_found(R::KIND, id))
}

/// `e` with `method: ` before the message of an `InvalidSpec` (what kubelet shows of a
/// refused request); other errors name their object already.
pub(in crate::cri) fn in_method(method: &str, e: Error) -> Error {
    match e {
        Error::InvalidSpec(message) => Error::InvalidSpec(format!("{method}: {message}")),
        other => other,
    }
}

/// Like [`resolve`], but an unknown id is `None`: for the teardown verbs, which
/// succeed on objects that do not exist.
pub(in crate::cri) fn find<R: Record>(
    store: &Store,
    method: &str,
    id: &str,
) -> runtimes::Result<Option<R>> {
    record_call_field::<R>(id);
    if id.is_empty() {
        return Err(Error::InvalidSpec(format!(
            "{method}: the {} id is empty",
            R::KIND
        )));
    }
    if let Some(record) = store.get::<R>(id)?.filter(|r| !r.is_creating()) {
        record_found(&record);
        return Ok(Some(record));
    }
    let mut matches = store
        .list::<R>()?
        .into_iter()
        .filter(|r| !r.is_creating() && r.id().starts_with(id));
    let first = matches.next();
    if matches.next().is_some() {
        return Err(Error::InvalidSpec(format!(
            "{method}: `{id}` is the prefix of several {} ids; give more of it",
            R::KIND
        )));
    }
    if let Some(record) = &first {
        record_found(record);
    }
    Ok(first)
}

/// Names `record` on the call's span: its whole CRI id (the request may give a
/// prefix), its pod's for a container, and its ContainerId, so every line of the call
/// (the backend's too) carries both kinds of id.
pub(in crate::cri) fn record_found<R: Record>(record: &R) {
    record_call_field::<R>(record.id());
    if let Some(sandbox) = record.sandbox() {
        telemetry::record(CallField::PodSandboxId, sandbox);
    }
    telemetry::record(
        CallField::BerthId,
        tracing::field::display(record.container_id()),
    );
}

/// Every record of kind `R` whose creation finished.
pub(in crate::cri) fn visible<R: Record>(store: &Store) -> runtimes::Result<Vec<R>> {
    Ok(store
        .query::<R>(&Query::default())?
        .into_iter()
        .map(|r| R::clone(&r))
        .collect())
}

/// The containers of the pod `pod_id` whose creation finished, from the index's
/// lookup by sandbox (not a pass over every container).
pub(in crate::cri) fn containers_of(
    store: &Store,
    pod_id: &str,
) -> runtimes::Result<Vec<ContainerRecord>> {
    Ok(store
        .query::<ContainerRecord>(&Query {
            sandbox: pod_id,
            ..Query::default()
        })?
        .into_iter()
        // A whole id is a prefix of itself only: the query matches prefixes.
        .filter(|c| c.sandbox_id == pod_id)
        .map(|c| ContainerRecord::clone(&c))
        .collect())
}

fn record_call_field<R: Record>(id: &str) {
    let field = if R::TABLE == Table::Containers {
        CallField::ContainerId
    } else {
        CallField::PodSandboxId
    };
    telemetry::record(field, id);
}

/// A list filter's id: empty matches everything, else a prefix of the CRI id.
pub(in crate::cri) fn id_matches(filter: &str, id: &str) -> bool {
    id.starts_with(filter)
}

/// A label selector: every pair must be among the labels shown for the object `id`
/// (`labels` and the ContainerId label, see [`shown_labels`]).
pub(in crate::cri) fn labels_match(
    selector: &HashMap<String, String>,
    labels: &HashMap<String, String>,
    id: &ContainerId,
) -> bool {
    selector.iter().all(|(k, v)| {
        if k == CONTAINER_ID_LABEL {
            *v == id.to_string()
        } else {
            labels.get(k) == Some(v)
        }
    })
}

/// kubelet's labels plus the ContainerId label, as CRI answers show them.
pub(in crate::cri) fn shown_labels(
    labels: &HashMap<String, String>,
    id: &ContainerId,
) -> HashMap<String, String> {
    let mut labels = labels.clone();
    labels.insert(CONTAINER_ID_LABEL.to_string(), id.to_string());
    labels
}

/// A new CRI id: 32 random bytes in hex, like containerd's.
pub(in crate::cri) fn new_cri_id() -> runtimes::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::io("reading /dev/urandom for a new CRI id", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Applies `change` to the record `id` of a creation in flight; its record vanishing
/// meanwhile is a failure of the store (nothing else removes a `Creating` record).
pub(in crate::cri) fn mark<R: Record>(
    store: &Store,
    id: &str,
    change: impl FnOnce(&mut R),
) -> runtimes::Result<R> {
    store.update::<R>(id, change)?.ok_or_else(|| {
        Error::backend(
            "state store",
            format!(
                "the record of {} {id} vanished while it was created",
                R::KIND
            ),
        )
    })
}

/// [`abandon`] for an NRI plugin's refusal: the record is dropped and the refusal
/// is the call's error; a failure to undo is logged (the refusal is what the caller
/// must hear).
pub(in crate::cri) fn abandon_nri<R: Record>(
    store: &Store,
    record: &R,
    refusal: crate::nri::NriError,
    undone: runtimes::Result<()>,
) -> crate::error::CallError {
    let removed = store.remove::<R>(record.id());
    for failure in undone.err().into_iter().chain(removed.err()) {
        tracing::error!(id = record.id(), error = %failure, "undoing after an NRI plugin refused");
    }
    refusal.into()
}

/// The error of a creation that failed with `failure` after `record` was inserted:
/// drops the record and its ContainerId; `undone` is the outcome of undoing the
/// creation in the backend. Names every failure.
pub(in crate::cri) fn abandon<R: Record>(
    store: &Store,
    record: &R,
    failure: Error,
    undone: runtimes::Result<()>,
) -> Error {
    let mut failures = vec![failure];
    failures.extend(undone.err());
    failures.extend(store.remove::<R>(record.id()).err());
    if failures.len() == 1 {
        return failures.remove(0);
    }
    let what = format!(
        "creating {} {} ({})",
        R::KIND,
        record.id(),
        record.container_id()
    );
    Error::Failures { what, failures }
}

/// Now, in nanoseconds since the Unix epoch.
/// Adds to a verbose status's `info` what the backend tells of where the pod or
/// container `id` lives: `supervisorPid`, `cgroupPath` and `netnsPath`, each only
/// when the backend knows it; `inspectError` when it could not be asked.
pub(in crate::cri) async fn add_inspection(
    cri: &crate::cri::Cri,
    id: &ContainerId,
    info: &mut serde_json::Value,
) {
    use runtimes::Runtime;
    let Some(fields) = info.as_object_mut() else {
        return;
    };
    match cri.runtime.inspect(id).await {
        Ok(found) => {
            if let Some(pid) = found.supervisor_pid {
                fields.insert("supervisorPid".into(), pid.into());
            }
            if let Some(cgroup) = found.cgroup_path {
                fields.insert("cgroupPath".into(), cgroup.into());
            }
            if let Some(netns) = found.netns_path {
                fields.insert("netnsPath".into(), netns.display().to_string().into());
            }
        }
        Err(err) => {
            fields.insert("inspectError".into(), err.to_string().into());
        }
    }
}

pub(in crate::cri) fn now_nanos() -> i64 {
    unix_nanos(SystemTime::now())
}

/// `time` in nanoseconds since the Unix epoch (0 before it, saturating far after).
pub(in crate::cri) fn unix_nanos(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The successful results of a per-record operation over `records` (in the same
/// order); a failure only leaves its record out of a list answer, logged at debug.
pub(in crate::cri) fn successes<R: Record, T>(
    what: &str,
    records: &[R],
    results: Vec<runtimes::Result<T>>,
) -> Vec<T> {
    records
        .iter()
        .zip(results)
        .filter_map(|(record, result)| {
            result
                .inspect_err(|err| {
                    tracing::debug!(kind = R::KIND, id = record.id(), berth_id = %record.container_id(), error = %err, "no {what}");
                })
                .ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_ids_are_64_distinct_hex_digits() {
        let a = new_cri_id().unwrap();
        let b = new_cri_id().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn label_selectors_need_every_pair() {
        let labels = HashMap::from([("a".to_string(), "1".to_string()), ("b".into(), "2".into())]);
        let id = ContainerId::new("web.ns", "app", 0, "n").unwrap();
        let sel = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>()
        };
        assert!(labels_match(&sel(&[]), &labels, &id));
        assert!(labels_match(&sel(&[("a", "1")]), &labels, &id));
        assert!(labels_match(&sel(&[("a", "1"), ("b", "2")]), &labels, &id));
        assert!(!labels_match(&sel(&[("a", "2")]), &labels, &id));
        assert!(!labels_match(&sel(&[("a", "1"), ("c", "3")]), &labels, &id));
        let by_id = sel(&[(CONTAINER_ID_LABEL, "web.ns-app-0-on-n")]);
        assert!(labels_match(&by_id, &labels, &id));
        assert!(!labels_match(
            &sel(&[(CONTAINER_ID_LABEL, "x")]),
            &labels,
            &id
        ));
    }

    #[tokio::test]
    async fn an_abandoned_creation_drops_its_record_and_names_every_failure() {
        let h = crate::cri::testing::Harness::new().await;
        let record = h.creating_sandbox("web").await;
        let vanished =
            mark::<crate::store::SandboxRecord>(h.store(), "no-such-pod", |_| {}).unwrap_err();
        assert!(vanished.to_string().contains("vanished"), "{vanished}");
        let err = abandon(
            h.store(),
            &record,
            Error::backend("state store", "disk full"),
            Err(Error::backend("mock", "still mounted")),
        );
        let text = err.to_string();
        assert!(
            text.contains("disk full") && text.contains("still mounted"),
            "{text}"
        );
        assert!(
            text.contains(&record.id) && text.contains("web.default-sandbox-0"),
            "{text}"
        );
        assert!(h.store().allocated_ids().unwrap().is_empty());
        assert!(h
            .store()
            .list::<crate::store::SandboxRecord>()
            .unwrap()
            .is_empty());
    }

    #[test]
    fn times_before_the_epoch_are_zero() {
        assert_eq!(unix_nanos(UNIX_EPOCH), 0);
        assert_eq!(
            unix_nanos(UNIX_EPOCH - std::time::Duration::from_secs(1)),
            0
        );
        assert!(now_nanos() > 1_600_000_000_000_000_000);
    }
}
