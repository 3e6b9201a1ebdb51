//! Start-up reconciliation of the store with the backends, before CRI is served.
//!
//! - A `Creating` record is a creation a crash cut short: the backend may or may not
//!   have made the object. It is removed from the backend (idempotent there) and the
//!   record and its ContainerId are dropped. When the backend fails, the record stays
//!   for the next start-up (it is invisible to CRI meanwhile).
//! - Every other record is kept with its ContainerId. A sandbox recorded ready that its
//!   backend no longer has ready (a reboot emptied `run_dir`, its supervisor died while
//!   berth was down) is marked not ready, so kubelet makes a new one.

use runtimes::types::SandboxState;
use runtimes::Runtime;

use crate::store::{ContainerRecord, Record, SandboxPhase, SandboxRecord, Store};

/// What start-up reconciliation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// Sandboxes and containers whose cut-short creation was rolled back.
    pub rolled_back: usize,
    /// Sandboxes found not ready any more.
    pub marked_not_ready: usize,
    /// Sandboxes and containers kept as they were.
    pub kept: usize,
    /// What could not be done, one line each (retried at the next start-up).
    pub failures: Vec<String>,
}

/// Reconciles `store` with `runtime` (the composite over every backend). Never fails:
/// berth must come up to let kubelet clean up; what failed is reported.
pub async fn reconcile(store: &Store, runtime: &dyn Runtime) -> Reconciled {
    let mut done = Reconciled::default();
    let containers = match store.list::<ContainerRecord>() {
        Ok(records) => records,
        Err(err) => {
            done.failures
                .push(format!("reading the container records: {err}"));
            Vec::new()
        }
    };
    // Containers first: a cut-short sandbox has no finished containers, and rolling a
    // container back needs its sandbox still there.
    for record in containers {
        if !record.is_creating() {
            done.kept += 1;
            continue;
        }
        let removed = runtime.remove_container(&record.container_id).await;
        roll_back(store, &record, removed, &mut done);
    }
    let sandboxes = match store.list::<SandboxRecord>() {
        Ok(records) => records,
        Err(err) => {
            done.failures
                .push(format!("reading the pod sandbox records: {err}"));
            Vec::new()
        }
    };
    for record in sandboxes {
        match record.phase {
            SandboxPhase::Creating => {
                let removed = runtime.remove_pod_sandbox(&record.container_id).await;
                roll_back(store, &record, removed, &mut done);
            }
            SandboxPhase::Ready => check_ready(store, runtime, &record, &mut done).await,
            SandboxPhase::NotReady => done.kept += 1,
        }
    }
    done
}

fn roll_back<R: Record>(
    store: &Store,
    record: &R,
    removed: runtimes::Result<()>,
    done: &mut Reconciled,
) {
    let outcome = removed
        .or_else(|e| if e.is_not_found() { Ok(()) } else { Err(e) })
        .and_then(|()| store.remove::<R>(record.id()));
    match outcome {
        Ok(()) => done.rolled_back += 1,
        Err(err) => done.failures.push(format!(
            "rolling back the creation of {} {} ({}): {err}",
            R::KIND,
            record.id(),
            record.container_id()
        )),
    }
}

async fn check_ready(
    store: &Store,
    runtime: &dyn Runtime,
    record: &SandboxRecord,
    done: &mut Reconciled,
) {
    let gone = match runtime.pod_sandbox_status(&record.container_id).await {
        Ok(status) => status.state != SandboxState::Ready,
        Err(err) if err.is_not_found() => true,
        Err(err) => {
            // Unknown: keep it ready; PodSandboxStatus asks again.
            done.failures.push(format!(
                "asking about pod sandbox {} ({}): {err}",
                record.id, record.container_id
            ));
            false
        }
    };
    if !gone {
        done.kept += 1;
        return;
    }
    match store.update::<SandboxRecord>(&record.id, |r| r.phase = SandboxPhase::NotReady) {
        Ok(_) => done.marked_not_ready += 1,
        Err(err) => done.failures.push(format!(
            "marking pod sandbox {} ({}) not ready: {err}",
            record.id, record.container_id
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::testing::Harness;
    use crate::store::ContainerPhase;

    #[tokio::test]
    async fn a_cut_short_sandbox_is_rolled_back_and_the_rest_kept_with_their_ids() {
        let h = Harness::new().await;
        let pod = h.run_pod("web").await;
        let container = h.start(&pod, "app").await;
        let ids_before = h.store().allocated_ids().unwrap();
        let creating = h.creating_sandbox("db").await;
        assert!(h.mock.holds_sandbox(&creating.container_id));

        let h = h.restart();
        let done = reconcile(h.store(), h.runtime()).await;
        assert_eq!(
            done,
            Reconciled {
                rolled_back: 1,
                marked_not_ready: 0,
                kept: 2,
                failures: vec![]
            }
        );
        assert!(!h.mock.holds_sandbox(&creating.container_id));
        assert!(h
            .store()
            .get::<SandboxRecord>(&creating.id)
            .unwrap()
            .is_none());
        assert_eq!(h.store().allocated_ids().unwrap(), ids_before);
        assert_eq!(h.store().routes().unwrap().len(), 2);
        // The kept ones answer as before, under the same ContainerIds.
        let record = h
            .store()
            .get::<ContainerRecord>(&container)
            .unwrap()
            .unwrap();
        assert_eq!(
            record.container_id.to_string(),
            "web.default-app-0-on-node-a"
        );
        assert_eq!(
            h.runtime().backend_of(&record.container_id).as_deref(),
            Some("mock")
        );
        // Idempotent.
        let again = reconcile(h.store(), h.runtime()).await;
        assert_eq!((again.rolled_back, again.kept), (0, 2));
    }

    #[tokio::test]
    async fn a_cut_short_container_is_rolled_back() {
        let h = Harness::new().await;
        let pod = h.run_pod("web").await;
        let id = h.create(&pod, "app").await;
        let cid = h.container_id_of(&id);
        h.store()
            .update::<ContainerRecord>(&id, |r| r.phase = ContainerPhase::Creating)
            .unwrap();
        let h = h.restart();
        let done = reconcile(h.store(), h.runtime()).await;
        assert_eq!((done.rolled_back, done.kept), (1, 1));
        assert!(h.mock.container_state(&cid).is_none());
        assert!(h.store().get::<ContainerRecord>(&id).unwrap().is_none());
        assert!(!h.store().allocated_ids().unwrap().contains_key(&cid));
    }

    #[tokio::test]
    async fn a_sandbox_its_backend_lost_is_marked_not_ready() {
        let h = Harness::new().await;
        let pod = h.run_pod("web").await;
        let cid = h.sandbox_id_of(&pod);
        h.mock.lose_sandbox(&cid);
        let h = h.restart();
        let done = reconcile(h.store(), h.runtime()).await;
        assert_eq!(done.marked_not_ready, 1);
        let record = h.store().get::<SandboxRecord>(&pod).unwrap().unwrap();
        assert_eq!(record.phase, SandboxPhase::NotReady);
        assert_eq!(record.container_id, cid);
    }

    #[tokio::test]
    async fn a_failed_rollback_keeps_the_record_for_the_next_start() {
        let h = Harness::new().await;
        let creating = h.creating_sandbox("db").await;
        h.mock.fail("remove_pod_sandbox", || {
            runtimes::Error::backend("mock", "netns busy")
        });
        let h = h.restart();
        let done = reconcile(h.store(), h.runtime()).await;
        assert_eq!(done.rolled_back, 0);
        assert_eq!(done.failures.len(), 1);
        assert!(
            done.failures[0].contains("netns busy"),
            "{:?}",
            done.failures
        );
        assert!(
            done.failures[0].contains(&creating.id),
            "{:?}",
            done.failures
        );
        assert!(h
            .store()
            .get::<SandboxRecord>(&creating.id)
            .unwrap()
            .is_some());
    }
}
