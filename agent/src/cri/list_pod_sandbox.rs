//! `ListPodSandbox`.

use std::sync::Arc;

use berth_proto::cri::v1::{ListPodSandboxRequest, ListPodSandboxResponse};
use bytes::Bytes;
use futures::future::join_all;
use prost::Message;
use runtimes::Runtime;

use super::shared::entries::{Encoding, Entries};
use super::shared::sandbox::{cri_state, settle, to_cri_sandbox};
use super::Cri;
use crate::store::{Query, SandboxPhase, SandboxRecord};

/// `ListPodSandbox`' encoded entries.
pub(super) type EncodedPods = Entries<SandboxRecord>;

/// The recorded pods (from the store's index: a filter looks up what it names, it
/// does not go through every pod), filtered by id (a prefix, as containerd), labels
/// and state, in the phases [`phases`] shows. The state filter applies to what is
/// shown.
pub(super) async fn list_pod_sandbox(
    cri: &Cri,
    request: ListPodSandboxRequest,
) -> runtimes::Result<ListPodSandboxResponse> {
    let items = listed(cri, request)
        .await?
        .iter()
        .map(|(record, phase)| to_cri_sandbox(record, *phase))
        .collect();
    Ok(ListPodSandboxResponse { items })
}

/// [`list_pod_sandbox`]' answer, encoded (what `ListPodSandbox` serves: see
/// `services::encoded`): each pod's entry is encoded once per version of its record,
/// without its state (`SANDBOX_READY`, 0, is not encoded), and kept in
/// [`EncodedPods`]; a listing writes each entry with its state appended as field 3.
pub(super) async fn list_pod_sandbox_encoded(
    cri: &Cri,
    request: ListPodSandboxRequest,
) -> runtimes::Result<Bytes> {
    let whole = request
        .filter
        .as_ref()
        .is_none_or(|f| f.id.is_empty() && f.label_selector.is_empty());
    let listed = listed(cri, request)
        .await?
        .into_iter()
        .map(|(record, phase)| (record, cri_state(phase) as u8))
        .collect();
    let encoding: Encoding<SandboxRecord> = Encoding {
        state_field: 3,
        id: |r| r.id.as_str(),
        encode: |r| to_cri_sandbox(r, SandboxPhase::Ready).encode_to_vec(),
    };
    Ok(cri.encoded_pods.answer(listed, whole, &encoding))
}

/// The pods a listing shows, in their phases.
async fn listed(
    cri: &Cri,
    request: ListPodSandboxRequest,
) -> runtimes::Result<Vec<(Arc<SandboxRecord>, SandboxPhase)>> {
    let filter = request.filter.unwrap_or_default();
    let records = cri.store.query::<SandboxRecord>(&Query {
        id: &filter.id,
        labels: Some(&filter.label_selector),
        ..Query::default()
    })?;
    let phases = phases(cri, &records).await;
    Ok(records
        .into_iter()
        .zip(phases)
        .filter(|(_, phase)| {
            filter
                .state
                .as_ref()
                .is_none_or(|s| s.state == cri_state(*phase) as i32)
        })
        .collect())
}

/// The phase each of `records` is shown in. A pod recorded ready is shown ready only
/// while its backend says so (its supervisor may have died: [`settle`] records it not
/// ready for good then). Its backend is asked only when it may have changed its mind:
/// a pod seen ready at the backend's state generation still current is still ready
/// (youki's generation moves with every pod record it writes and every supervisor
/// death), so kubelet's listing every second asks no backend while nothing happens.
/// Backends without a generation are asked about every pod recorded ready, each
/// answering from memory.
async fn phases(cri: &Cri, records: &[Arc<SandboxRecord>]) -> Vec<SandboxPhase> {
    // Read before asking: a change during the call moves it past what is recorded.
    let generation = cri.runtime.state_generation();
    let seen = match generation {
        Some(generation) => cri.store.pods_ready_at(records, generation),
        None => vec![false; records.len()],
    };
    let mut phases: Vec<SandboxPhase> = records
        .iter()
        .zip(&seen)
        .map(|(r, &seen)| if seen { SandboxPhase::Ready } else { r.phase })
        .collect();
    let asked: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].phase == SandboxPhase::Ready && !seen[i])
        .collect();
    let answers = join_all(
        asked
            .iter()
            .map(|&i| cri.runtime.pod_sandbox_status(&records[i].container_id)),
    )
    .await;
    for (&i, answer) in asked.iter().zip(answers) {
        phases[i] = settle(cri, &records[i], &answer);
        if let (SandboxPhase::Ready, Some(generation)) = (phases[i], generation) {
            cri.store.set_pod_ready_at(&records[i], generation);
        }
    }
    phases
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use berth_proto::cri::v1 as cri;

    use super::*;
    use crate::cri::remove_pod_sandbox::remove_pod_sandbox;
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

    fn asked(h: &Harness) -> usize {
        h.mock
            .calls()
            .into_iter()
            .filter(|c| c.operation == "pod_sandbox_status")
            .count()
    }

    /// With a backend that keeps a state generation, a listing where nothing changed
    /// asks the backend about no pod; a lost sandbox moves the generation, and the
    /// next listing asks again, shows it not ready and records it so; a restarted
    /// agent asks once, then lists from memory.
    #[tokio::test]
    async fn a_listing_asks_about_pods_again_only_after_the_state_generation_moved() {
        let h = Harness::new().await;
        h.mock.keep_state_generation();
        h.run_pod("web").await;
        let lost = h.run_pod("lost").await;
        h.run_pod("db").await;
        assert_eq!(list(&h, Default::default()).await, ["db", "lost", "web"]);
        let before = asked(&h);
        for _ in 0..3 {
            assert_eq!(
                list(&h, in_state(cri::PodSandboxState::SandboxReady)).await,
                ["db", "lost", "web"]
            );
        }
        assert_eq!(asked(&h), before, "nothing moved: nothing asked");

        h.mock.lose_sandbox(&h.sandbox_id_of(&lost));
        assert_eq!(
            list(&h, in_state(cri::PodSandboxState::SandboxNotready)).await,
            ["lost"]
        );
        let record = h.store().get::<SandboxRecord>(&lost).unwrap().unwrap();
        assert_eq!(record.phase, SandboxPhase::NotReady, "recorded");
        let before = asked(&h);
        assert_eq!(
            list(&h, in_state(cri::PodSandboxState::SandboxReady)).await,
            ["db", "web"]
        );
        assert_eq!(asked(&h), before);

        let h = h.restart();
        assert_eq!(
            list(&h, in_state(cri::PodSandboxState::SandboxReady)).await,
            ["db", "web"]
        );
        let before = asked(&h);
        assert_eq!(list(&h, Default::default()).await, ["db", "lost", "web"]);
        assert_eq!(asked(&h), before);
    }

    /// A pod seen ready before a change of its record (here: stopped) is not shown
    /// ready from what was seen before, even by a backend whose generation did not
    /// move.
    #[tokio::test]
    async fn a_change_of_the_record_drops_what_was_seen() {
        let h = Harness::new().await;
        h.mock.keep_state_generation();
        let web = h.run_pod("web").await;
        assert_eq!(
            list(&h, in_state(cri::PodSandboxState::SandboxReady)).await,
            ["web"]
        );
        // A record written again (as by a concurrent verb) is asked about again.
        h.store()
            .update::<SandboxRecord>(&web, |r| r.ips = vec!["10.0.0.9".into()])
            .unwrap();
        let before = asked(&h);
        assert_eq!(
            list(&h, in_state(cri::PodSandboxState::SandboxReady)).await,
            ["web"]
        );
        assert_eq!(asked(&h), before + 1);
        h.store()
            .update::<SandboxRecord>(&web, |r| r.phase = SandboxPhase::NotReady)
            .unwrap();
        assert_eq!(
            list(&h, in_state(cri::PodSandboxState::SandboxNotready)).await,
            ["web"]
        );
    }

    #[tokio::test]
    async fn a_filter_asks_only_about_what_it_matches() {
        let h = Harness::new().await;
        let web = h.run_pod("web").await;
        for name in ["db", "cache", "queue"] {
            h.run_pod(name).await;
        }
        let before = asked(&h);
        let by_id = cri::PodSandboxFilter {
            id: web[..10].to_string(),
            ..Default::default()
        };
        assert_eq!(list(&h, by_id).await, ["web"]);
        assert_eq!(asked(&h) - before, 1);
        let before = asked(&h);
        let by_label = cri::PodSandboxFilter {
            label_selector: HashMap::from([("app".to_string(), "db".to_string())]),
            ..Default::default()
        };
        assert_eq!(list(&h, by_label).await, ["db"]);
        assert_eq!(asked(&h) - before, 1);
    }

    /// Asserts that the encoded answer to `filter` decodes to `list_pod_sandbox`'
    /// answer; how many pods it lists.
    async fn same(h: &Harness, filter: Option<cri::PodSandboxFilter>) -> usize {
        let request = ListPodSandboxRequest { filter };
        let mut plain = list_pod_sandbox(&h.cri, request.clone()).await.unwrap();
        let encoded = list_pod_sandbox_encoded(&h.cri, request).await.unwrap();
        let mut decoded = ListPodSandboxResponse::decode(encoded).unwrap();
        plain.items.sort_by(|a, b| a.id.cmp(&b.id));
        decoded.items.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(decoded, plain);
        plain.items.len()
    }

    /// The encoded answer decodes to what `list_pod_sandbox` answers, entries reused
    /// or not, for every filter, through runs, stops, a lost sandbox, removals and a
    /// restart of the agent; and it lists what the store holds.
    #[tokio::test]
    async fn the_encoded_answer_is_the_listing_through_changes_and_restarts() {
        let h = Harness::new().await;
        h.mock.keep_state_generation();
        h.run_pod("web").await;
        let db = h.run_pod("db").await;
        let lost = h.run_pod("lost").await;
        let ready = || Some(in_state(cri::PodSandboxState::SandboxReady));
        let by_app = |app: &str| cri::PodSandboxFilter {
            label_selector: HashMap::from([("app".to_string(), app.to_string())]),
            ..Default::default()
        };
        for _ in 0..2 {
            assert_eq!(same(&h, None).await, 3);
            assert_eq!(same(&h, ready()).await, 3);
            assert_eq!(same(&h, Some(by_app("db"))).await, 1);
        }
        stop_pod_sandbox(
            &h.cri,
            cri::StopPodSandboxRequest {
                pod_sandbox_id: db.clone(),
            },
        )
        .await
        .unwrap();
        h.mock.lose_sandbox(&h.sandbox_id_of(&lost));
        assert_eq!(same(&h, ready()).await, 1);
        assert_eq!(same(&h, None).await, 3);
        remove_pod_sandbox(
            &h.cri,
            cri::RemovePodSandboxRequest {
                pod_sandbox_id: db.clone(),
            },
        )
        .await
        .unwrap();
        assert_eq!(same(&h, None).await, 2);
        assert_eq!(same(&h, Some(by_app("db"))).await, 0);
        let h = h.restart();
        assert_eq!(same(&h, None).await, 2);
        assert_eq!(same(&h, ready()).await, 1);
        h.run_pod("again").await;
        assert_eq!(same(&h, ready()).await, 2);
        let listed = list_pod_sandbox_encoded(&h.cri, ListPodSandboxRequest::default())
            .await
            .unwrap();
        let listed = ListPodSandboxResponse::decode(listed)
            .unwrap()
            .items
            .into_iter()
            .map(|p| p.id);
        let recorded = h
            .store()
            .list::<SandboxRecord>()
            .unwrap()
            .into_iter()
            .map(|r| r.id);
        assert_eq!(sorted(listed), sorted(recorded));
    }
}
