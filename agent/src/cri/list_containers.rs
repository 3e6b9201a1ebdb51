//! `ListContainers`.

use std::sync::Arc;

use berth_proto::cri::v1::{ListContainersRequest, ListContainersResponse};
use bytes::Bytes;
use prost::Message;
use runtimes::types::ContainerState;

use super::shared::container::{cri_state, listed_states, to_cri_container};
use super::shared::entries::{Encoding, Entries};
use super::Cri;
use crate::store::{ContainerRecord, Query};

/// `ListContainers`' encoded entries.
pub(super) type EncodedEntries = Entries<ContainerRecord>;

/// The recorded containers in their backends' states, filtered by id and pod id
/// (prefixes, as containerd), state and labels. The records come from the store's
/// index (a filter looks up what it names, it does not go through every pod) and
/// their states from [`listed_states`]; the state filter needs the states, so it is
/// applied last, to what the other filters kept.
pub(super) async fn list_containers(
    cri: &Cri,
    request: ListContainersRequest,
) -> runtimes::Result<ListContainersResponse> {
    let containers = listed(cri, request)
        .await?
        .iter()
        .map(|(record, state)| to_cri_container(record, *state))
        .collect();
    Ok(ListContainersResponse { containers })
}

/// [`list_containers`]' answer, encoded (what `ListContainers` serves: see
/// `services::encoded`): each container's entry is encoded once per version of its
/// record, without its state (`CONTAINER_CREATED`, 0, is not encoded), and kept in
/// [`EncodedEntries`]; a listing writes each entry with its state appended as field 6.
pub(super) async fn list_containers_encoded(
    cri: &Cri,
    request: ListContainersRequest,
) -> runtimes::Result<Bytes> {
    let whole = request.filter.as_ref().is_none_or(|f| {
        f.id.is_empty() && f.pod_sandbox_id.is_empty() && f.label_selector.is_empty()
    });
    let listed = listed(cri, request)
        .await?
        .into_iter()
        .map(|(record, state)| (record, cri_state(state) as u8))
        .collect();
    let encoding: Encoding<ContainerRecord> = Encoding {
        state_field: 6,
        id: |r| r.id.as_str(),
        encode: |r| to_cri_container(r, ContainerState::Created).encode_to_vec(),
    };
    Ok(cri.encoded_containers.answer(listed, whole, &encoding))
}

/// The containers a listing shows, with their states.
async fn listed(
    cri: &Cri,
    request: ListContainersRequest,
) -> runtimes::Result<Vec<(Arc<ContainerRecord>, ContainerState)>> {
    let filter = request.filter.unwrap_or_default();
    let records = cri.store.query::<ContainerRecord>(&Query {
        id: &filter.id,
        sandbox: &filter.pod_sandbox_id,
        labels: Some(&filter.label_selector),
    })?;
    let states = listed_states(cri, &records).await;
    Ok(records
        .into_iter()
        .zip(states)
        .filter(|(_, state)| {
            filter
                .state
                .as_ref()
                .is_none_or(|s| s.state == cri_state(*state) as i32)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use berth_proto::cri::v1 as cri;

    use super::*;
    use crate::cri::create_container::create_container;
    use crate::cri::list_pod_sandbox::{list_pod_sandbox, list_pod_sandbox_encoded};
    use crate::cri::remove_container::remove_container;
    use crate::cri::remove_pod_sandbox::remove_pod_sandbox;
    use crate::cri::start_container::start_container;
    use crate::cri::stop_container::stop_container;
    use crate::cri::stop_pod_sandbox::stop_pod_sandbox;
    use crate::cri::testing::{container_request, sorted, Harness};
    use crate::store::{Record, SandboxRecord};

    async fn list(h: &Harness, filter: cri::ContainerFilter) -> Vec<String> {
        let request = ListContainersRequest {
            filter: Some(filter),
        };
        sorted(
            list_containers(&h.cri, request)
                .await
                .unwrap()
                .containers
                .into_iter()
                .map(|c| c.metadata.unwrap().name),
        )
    }

    #[tokio::test]
    async fn filters_by_id_pod_state_and_labels() {
        let h = Harness::new().await;
        let web = h.run_pod("web").await;
        let db = h.run_pod("db").await;
        let running = h.start(&web, "front").await;
        h.create(&web, "side").await;
        h.start(&db, "pg").await;

        let all = list_containers(&h.cri, ListContainersRequest::default())
            .await
            .unwrap();
        assert_eq!(all.containers.len(), 3);
        let front = all.containers.iter().find(|c| c.id == running).unwrap();
        assert_eq!(front.pod_sandbox_id, web);
        assert_eq!(front.state(), cri::ContainerState::ContainerRunning);
        assert_eq!(front.image_ref, "docker.io/library/busybox@sha256:bbbb");
        assert_eq!(front.image_id, "sha256:aaaa");

        let f = |id: &str, pod: &str| cri::ContainerFilter {
            id: id.into(),
            pod_sandbox_id: pod.into(),
            ..Default::default()
        };
        assert_eq!(list(&h, f(&running, "")).await, ["front"]);
        assert_eq!(list(&h, f(&running[..8], "")).await, ["front"]);
        assert_eq!(list(&h, f("", &web)).await, ["front", "side"]);
        assert_eq!(list(&h, f("", &db[..5])).await, ["pg"]);
        assert!(list(&h, f(&running, &db)).await.is_empty());

        let state = |s: cri::ContainerState| cri::ContainerFilter {
            state: Some(cri::ContainerStateValue { state: s as i32 }),
            ..Default::default()
        };
        assert_eq!(
            list(&h, state(cri::ContainerState::ContainerRunning)).await,
            ["front", "pg"]
        );
        assert_eq!(
            list(&h, state(cri::ContainerState::ContainerCreated)).await,
            ["side"]
        );
        assert!(list(&h, state(cri::ContainerState::ContainerExited))
            .await
            .is_empty());

        let labels = cri::ContainerFilter {
            label_selector: HashMap::from([("tier".to_string(), "side".to_string())]),
            ..Default::default()
        };
        assert_eq!(list(&h, labels).await, ["side"]);
    }

    /// The index holds exactly what the store holds, and the listings show its
    /// records whose creation finished.
    async fn assert_consistent(h: &Harness) {
        let store = h.store();
        assert_eq!(
            store.indexed_records::<ContainerRecord>(),
            store.list::<ContainerRecord>().unwrap()
        );
        assert_eq!(
            store.indexed_records::<SandboxRecord>(),
            store.list::<SandboxRecord>().unwrap()
        );
        let listed = list_containers(&h.cri, ListContainersRequest::default())
            .await
            .unwrap()
            .containers
            .into_iter()
            .map(|c| c.id);
        let recorded = store
            .list::<ContainerRecord>()
            .unwrap()
            .into_iter()
            .filter(|r| !r.is_creating())
            .map(|r| r.id);
        assert_eq!(sorted(listed), sorted(recorded));
        let pods = list_pod_sandbox(&h.cri, cri::ListPodSandboxRequest::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|p| p.id);
        let recorded = store
            .list::<SandboxRecord>()
            .unwrap()
            .into_iter()
            .filter(|r| !r.is_creating())
            .map(|r| r.id);
        assert_eq!(sorted(pods), sorted(recorded));
    }

    async fn state_of(h: &Harness, id: &str) -> Option<cri::ContainerState> {
        list_containers(&h.cri, ListContainersRequest::default())
            .await
            .unwrap()
            .containers
            .into_iter()
            .find(|c| c.id == id)
            .map(|c| c.state())
    }

    #[tokio::test]
    async fn the_index_follows_the_store_through_creates_starts_stops_and_removals() {
        let h = Harness::new().await;
        let web = h.run_pod("web").await;
        let db = h.run_pod("db").await;
        assert_consistent(&h).await;
        let front = h.create(&web, "front").await;
        assert_eq!(
            state_of(&h, &front).await,
            Some(cri::ContainerState::ContainerCreated)
        );
        assert_consistent(&h).await;
        start_container(
            &h.cri,
            cri::StartContainerRequest {
                container_id: front.clone(),
            },
        )
        .await
        .unwrap();
        assert_eq!(
            state_of(&h, &front).await,
            Some(cri::ContainerState::ContainerRunning)
        );
        let pg = h.start(&db, "pg").await;
        assert_consistent(&h).await;
        stop_container(
            &h.cri,
            cri::StopContainerRequest {
                container_id: front.clone(),
                timeout: 0,
            },
        )
        .await
        .unwrap();
        assert_eq!(
            state_of(&h, &front).await,
            Some(cri::ContainerState::ContainerExited)
        );
        remove_container(
            &h.cri,
            cri::RemoveContainerRequest {
                container_id: front.clone(),
            },
        )
        .await
        .unwrap();
        assert_eq!(state_of(&h, &front).await, None);
        assert_consistent(&h).await;
        stop_pod_sandbox(
            &h.cri,
            cri::StopPodSandboxRequest {
                pod_sandbox_id: db.clone(),
            },
        )
        .await
        .unwrap();
        remove_pod_sandbox(
            &h.cri,
            cri::RemovePodSandboxRequest {
                pod_sandbox_id: db.clone(),
            },
        )
        .await
        .unwrap();
        assert_eq!(state_of(&h, &pg).await, None);
        assert_consistent(&h).await;
        assert_eq!(list(&h, cri::ContainerFilter::default()).await.len(), 0);
    }

    /// Every container and pod listed, in id order.
    async fn everything(h: &Harness) -> (Vec<cri::Container>, Vec<cri::PodSandbox>) {
        let mut containers = list_containers(&h.cri, ListContainersRequest::default())
            .await
            .unwrap()
            .containers;
        containers.sort_by(|a, b| a.id.cmp(&b.id));
        let mut pods = list_pod_sandbox(&h.cri, cri::ListPodSandboxRequest::default())
            .await
            .unwrap()
            .items;
        pods.sort_by(|a, b| a.id.cmp(&b.id));
        (containers, pods)
    }

    #[tokio::test]
    async fn a_restarted_agent_lists_what_it_listed_before() {
        let h = Harness::new().await;
        let web = h.run_pod("web").await;
        let db = h.run_pod("db").await;
        h.start(&web, "front").await;
        h.create(&web, "side").await;
        let pg = h.start(&db, "pg").await;
        h.mock.exit_container(&h.container_id_of(&pg), 3);
        let _ = h.creating_sandbox("half").await;
        let before = everything(&h).await;
        assert_eq!(before.0.len(), 3);
        assert_eq!(before.1.len(), 2, "the pod being created is not listed");
        let h = h.restart();
        assert_consistent(&h).await;
        assert_eq!(everything(&h).await, before);
    }

    #[tokio::test]
    async fn records_a_crash_left_creating_are_not_listed() {
        let h = Harness::new().await;
        let web = h.run_pod("web").await;
        let app = h.start(&web, "app").await;
        let mut crashed = h.store().get::<ContainerRecord>(&app).unwrap().unwrap();
        crashed.id = "c".repeat(64);
        crashed.container_id =
            runtimes::ContainerId::new("web.default", "crashed", 0, "node-a").unwrap();
        crashed.phase = crate::store::ContainerPhase::Creating;
        h.store()
            .insert::<_, runtimes::Error>(|_| Ok(crashed.clone()))
            .unwrap();
        let by_id = cri::ContainerFilter {
            id: crashed.id.clone(),
            ..Default::default()
        };
        assert!(list(&h, by_id.clone()).await.is_empty());
        assert_eq!(list(&h, Default::default()).await, ["app"]);
        assert_consistent(&h).await;
        let h = h.restart();
        assert!(list(&h, by_id).await.is_empty());
        assert_consistent(&h).await;
        // A creation that fails drops its record from the index too.
        h.mock.fail("create_container", || {
            runtimes::Error::backend("mock", "boom")
        });
        create_container(&h.cri, container_request(&web, "broken", 0))
            .await
            .unwrap_err();
        assert_consistent(&h).await;
    }

    #[tokio::test]
    async fn a_container_that_exits_by_itself_is_listed_exited_and_stays_so() {
        let h = Harness::new().await;
        let web = h.run_pod("web").await;
        let app = h.start(&web, "app").await;
        assert_eq!(
            state_of(&h, &app).await,
            Some(cri::ContainerState::ContainerRunning)
        );
        h.mock.exit_container(&h.container_id_of(&app), 1);
        assert_eq!(
            state_of(&h, &app).await,
            Some(cri::ContainerState::ContainerExited)
        );
        // An exit is for good: the backend is not asked about it again.
        h.mock.fail("container_status", || {
            runtimes::Error::backend("mock", "busy")
        });
        assert_eq!(
            state_of(&h, &app).await,
            Some(cri::ContainerState::ContainerExited)
        );
    }

    /// With a backend that keeps a state generation, a listing where nothing changed
    /// asks the backend nothing; an exit (or any verb) moves the generation, and the
    /// next listing asks again and shows the exit, with no ContainerStatus call.
    #[tokio::test]
    async fn a_listing_asks_again_only_after_the_state_generation_moved() {
        let h = Harness::new().await;
        h.mock.keep_state_generation();
        let web = h.run_pod("web").await;
        let front = h.start(&web, "front").await;
        let side = h.start(&web, "side").await;
        let asked = |h: &Harness| {
            h.mock
                .calls()
                .into_iter()
                .filter(|c| c.operation == "container_status")
                .count()
        };
        assert_eq!(
            state_of(&h, &front).await,
            Some(cri::ContainerState::ContainerRunning)
        );
        let before = asked(&h);
        for _ in 0..3 {
            assert_eq!(list(&h, Default::default()).await, ["front", "side"]);
        }
        assert_eq!(asked(&h), before, "nothing moved: nothing asked");

        h.mock.exit_container(&h.container_id_of(&side), 2);
        assert_eq!(
            state_of(&h, &side).await,
            Some(cri::ContainerState::ContainerExited)
        );
        assert_eq!(
            state_of(&h, &front).await,
            Some(cri::ContainerState::ContainerRunning)
        );
        let before = asked(&h);
        state_of(&h, &front).await;
        assert_eq!(asked(&h), before);

        // A restarted agent knows no state: it asks once, then lists from memory.
        let h = h.restart();
        assert_eq!(
            state_of(&h, &side).await,
            Some(cri::ContainerState::ContainerExited)
        );
        let before = asked(&h);
        state_of(&h, &front).await;
        assert_eq!(asked(&h), before);
        assert_consistent(&h).await;
    }

    /// Asserts that the encoded answer to `filter` decodes to `list_containers`'
    /// answer; how many containers it lists.
    async fn same(h: &Harness, filter: Option<cri::ContainerFilter>) -> usize {
        let request = ListContainersRequest { filter };
        let mut plain = list_containers(&h.cri, request.clone()).await.unwrap();
        let encoded = list_containers_encoded(&h.cri, request).await.unwrap();
        let mut decoded = ListContainersResponse::decode(encoded).unwrap();
        plain.containers.sort_by(|a, b| a.id.cmp(&b.id));
        decoded.containers.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(decoded, plain);
        plain.containers.len()
    }

    /// The encoded answer decodes to what `list_containers` answers, entries reused
    /// or not, for every filter and after changes.
    #[tokio::test]
    async fn the_encoded_answer_is_the_listing() {
        let h = Harness::new().await;
        let web = h.run_pod("web").await;
        let db = h.run_pod("db").await;
        let front = h.start(&web, "front").await;
        h.create(&web, "side").await;
        let pg = h.start(&db, "pg").await;
        for _ in 0..2 {
            assert_eq!(same(&h, None).await, 3);
            let by_pod = cri::ContainerFilter {
                pod_sandbox_id: web.clone(),
                ..Default::default()
            };
            assert_eq!(same(&h, Some(by_pod)).await, 2);
            let running = cri::ContainerFilter {
                state: Some(cri::ContainerStateValue {
                    state: cri::ContainerState::ContainerRunning as i32,
                }),
                ..Default::default()
            };
            assert_eq!(same(&h, Some(running)).await, 2);
        }
        h.mock.exit_container(&h.container_id_of(&pg), 1);
        stop_container(
            &h.cri,
            cri::StopContainerRequest {
                container_id: front.clone(),
                timeout: 0,
            },
        )
        .await
        .unwrap();
        remove_container(
            &h.cri,
            cri::RemoveContainerRequest {
                container_id: front,
            },
        )
        .await
        .unwrap();
        assert_eq!(same(&h, None).await, 2);
        assert_eq!(same(&h, None).await, 2);
    }

    /// A removed container's or pod's encoded entry goes with it, not only at the next
    /// listing of everything (which a node without kubelet may never make): a burst
    /// of pods leaves nothing of theirs behind.
    #[tokio::test]
    async fn removals_drop_their_encoded_entries() {
        let h = Harness::new().await;
        let web = h.run_pod("web").await;
        let db = h.run_pod("db").await;
        let front = h.create(&web, "front").await;
        h.create(&web, "side").await;
        h.create(&db, "pg").await;
        assert_eq!(same(&h, None).await, 3);
        let pods = cri::ListPodSandboxRequest { filter: None };
        list_pod_sandbox_encoded(&h.cri, pods.clone())
            .await
            .unwrap();
        assert_eq!(h.cri.encoded_containers.len(), 3);
        assert_eq!(h.cri.encoded_pods.len(), 2);
        remove_container(
            &h.cri,
            cri::RemoveContainerRequest {
                container_id: front,
            },
        )
        .await
        .unwrap();
        assert_eq!(h.cri.encoded_containers.len(), 2);
        remove_pod_sandbox(
            &h.cri,
            cri::RemovePodSandboxRequest {
                pod_sandbox_id: web,
            },
        )
        .await
        .unwrap();
        assert_eq!(h.cri.encoded_containers.len(), 1);
        assert_eq!(h.cri.encoded_pods.len(), 1);
        // What is left is still what a listing answers.
        assert_eq!(same(&h, None).await, 1);
        let listed = list_pod_sandbox_encoded(&h.cri, pods).await.unwrap();
        let listed = cri::ListPodSandboxResponse::decode(listed).unwrap();
        assert_eq!(listed.items.len(), 1);
    }

    #[tokio::test]
    async fn a_filter_asks_only_about_what_it_matches() {
        let h = Harness::new().await;
        let web = h.run_pod("web").await;
        let db = h.run_pod("db").await;
        let front = h.start(&web, "front").await;
        h.start(&db, "pg").await;
        h.start(&db, "replica").await;
        let asked = |h: &Harness| {
            h.mock
                .calls()
                .into_iter()
                .filter(|c| c.operation == "container_status")
                .count()
        };
        let before = asked(&h);
        let by_pod = cri::ContainerFilter {
            pod_sandbox_id: web.clone(),
            ..Default::default()
        };
        assert_eq!(list(&h, by_pod).await, ["front"]);
        assert_eq!(asked(&h) - before, 1);
        let before = asked(&h);
        let by_label = cri::ContainerFilter {
            label_selector: HashMap::from([(
                crate::identity::CONTAINER_ID_LABEL.to_string(),
                h.container_id_of(&front).to_string(),
            )]),
            ..Default::default()
        };
        assert_eq!(list(&h, by_label).await, ["front"]);
        assert_eq!(asked(&h) - before, 1);
    }

    #[tokio::test]
    async fn a_backend_that_fails_for_one_container_does_not_fail_the_list() {
        let h = Harness::new().await;
        let web = h.run_pod("web").await;
        h.start(&web, "front").await;
        h.mock.fail("container_status", || {
            runtimes::Error::backend("mock", "boom")
        });
        let all = list_containers(&h.cri, ListContainersRequest::default())
            .await
            .unwrap();
        assert_eq!(
            all.containers[0].state(),
            cri::ContainerState::ContainerUnknown
        );
    }
}
