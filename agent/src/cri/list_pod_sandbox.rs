//! `ListPodSandbox`.

use berth_proto::cri::v1::{ListPodSandboxRequest, ListPodSandboxResponse};
use futures::future::join_all;
use runtimes::Runtime;

use super::shared::sandbox::{cri_state, settle, to_cri_sandbox};
use super::Cri;
use crate::store::{Query, SandboxPhase, SandboxRecord};

/// The recorded pods (from the store's index), filtered by id (a prefix, as
/// containerd), labels and state. A
/// pod recorded ready is shown ready only while its backend says so (its supervisor
/// may have died): the backends answer that from memory (the youki backend polls a
/// pidfd), so kubelet's listing every second asks no supervisor. The state filter
/// applies to what is shown.
pub(super) async fn list_pod_sandbox(
    cri: &Cri,
    request: ListPodSandboxRequest,
) -> runtimes::Result<ListPodSandboxResponse> {
    let filter = request.filter.unwrap_or_default();
    let records = cri.store.query::<SandboxRecord>(&Query {
        id: &filter.id,
        labels: Some(&filter.label_selector),
        ..Query::default()
    })?;
    let phases = join_all(records.iter().map(|r| phase(cri, r))).await;
    let items = records
        .iter()
        .zip(phases)
        .filter(|(_, phase)| {
            filter
                .state
                .as_ref()
                .is_none_or(|s| s.state == cri_state(*phase) as i32)
        })
        .map(|(record, phase)| to_cri_sandbox(record, phase))
        .collect();
    Ok(ListPodSandboxResponse { items })
}

/// The phase `record` is shown in: its backend is asked only while it is recorded
/// ready.
async fn phase(cri: &Cri, record: &SandboxRecord) -> SandboxPhase {
    if record.phase != SandboxPhase::Ready {
        return record.phase;
    }
    let backend = cri.runtime.pod_sandbox_status(&record.container_id).await;
    settle(cri, record, &backend)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use berth_proto::cri::v1 as cri;

    use super::*;
    use crate::cri::stop_pod_sandbox::stop_pod_sandbox;
    use crate::cri::testing::{sorted, Harness};
    use crate::identity::CONTAINER_ID_LABEL;

    async fn list(h: &Harness, filter: cri::PodSandboxFilter) -> Vec<String> {
        let request = ListPodSandboxRequest {
            filter: Some(filter),
        };
        sorted(
            list_pod_sandbox(&h.cri, request)
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|s| s.metadata.unwrap().name),
        )
    }

    fn in_state(s: cri::PodSandboxState) -> cri::PodSandboxFilter {
        cri::PodSandboxFilter {
            state: Some(cri::PodSandboxStateValue { state: s as i32 }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn filters_by_id_prefix_state_and_labels() {
        let h = Harness::new().await;
        let web = h.run_pod("web").await;
        let db = h.run_pod("db").await;
        stop_pod_sandbox(
            &h.cri,
            cri::StopPodSandboxRequest {
                pod_sandbox_id: db.clone(),
            },
        )
        .await
        .unwrap();
        let all = list_pod_sandbox(&h.cri, ListPodSandboxRequest::default())
            .await
            .unwrap();
        assert_eq!(all.items.len(), 2);

        let by = |id: &str| cri::PodSandboxFilter {
            id: id.into(),
            ..Default::default()
        };
        assert_eq!(list(&h, by(&web)).await, ["web"]);
        assert_eq!(list(&h, by(&db[..6])).await, ["db"]);
        assert!(list(&h, by("zz")).await.is_empty());

        assert_eq!(
            list(&h, in_state(cri::PodSandboxState::SandboxReady)).await,
            ["web"]
        );
        assert_eq!(
            list(&h, in_state(cri::PodSandboxState::SandboxNotready)).await,
            ["db"]
        );

        let labels = |pairs: &[(&str, &str)]| cri::PodSandboxFilter {
            label_selector: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
            ..Default::default()
        };
        assert_eq!(list(&h, labels(&[("app", "db")])).await, ["db"]);
        assert_eq!(
            list(
                &h,
                labels(&[(CONTAINER_ID_LABEL, "web.default-sandbox-0-on-node-a")])
            )
            .await,
            ["web"]
        );
        assert!(list(&h, labels(&[("app", "db"), ("x", "y")]))
            .await
            .is_empty());
    }

    #[tokio::test]
    async fn a_pod_its_backend_lost_is_listed_not_ready_for_good() {
        let h = Harness::new().await;
        let web = h.run_pod("web").await;
        let lost = h.run_pod("lost").await;
        h.mock.lose_sandbox(&h.sandbox_id_of(&lost));
        assert_eq!(
            list(&h, in_state(cri::PodSandboxState::SandboxReady)).await,
            ["web"]
        );
        assert_eq!(
            list(&h, in_state(cri::PodSandboxState::SandboxNotready)).await,
            ["lost"]
        );
        let record = h.store().get::<SandboxRecord>(&lost).unwrap().unwrap();
        assert_eq!(record.phase, SandboxPhase::NotReady, "recorded");
        // A pod its backend cannot be asked about now is shown not ready, not
        // recorded so.
        h.mock.fail("pod_sandbox_status", || {
            runtimes::Error::backend("mock", "busy")
        });
        assert_eq!(
            list(&h, in_state(cri::PodSandboxState::SandboxNotready)).await,
            ["lost", "web"]
        );
        let record = h.store().get::<SandboxRecord>(&web).unwrap().unwrap();
        assert_eq!(record.phase, SandboxPhase::Ready);
    }

    #[tokio::test]
    async fn a_pod_being_created_is_not_listed() {
        let h = Harness::new().await;
        let creating = h.creating_sandbox("web").await;
        assert!(list(&h, Default::default()).await.is_empty());
        assert!(list(
            &h,
            cri::PodSandboxFilter {
                id: creating.id,
                ..Default::default()
            }
        )
        .await
        .is_empty());
    }
}
