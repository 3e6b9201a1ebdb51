//! `RunPodSandbox`.

use berth_proto::cri::v1::{RunPodSandboxRequest, RunPodSandboxResponse};
use runtimes::types::SandboxState;
use runtimes::{Error, Runtime};

use super::shared::objects::{abandon, abandon_nri, mark, new_cri_id, now_nanos};
use super::shared::sandbox_spec::sandbox_spec;
use super::Cri;
use crate::error::{CallError, CallResult};
use crate::identity::{self, Pod};
use crate::store::{SandboxPhase, SandboxRecord};
use crate::telemetry::{self, CallField};

const METHOD: &str = "RunPodSandbox";

/// Records the sandbox as `Creating` with a fresh ContainerId, records the backend the
/// composite chooses for it, asks that backend to run it, then marks it `Ready`. A sandbox name (`name_namespace_uid_attempt`) already
/// in use is `AlreadyExists`. When the backend fails, the record and its ContainerId
/// are dropped again (the backend cleaned up after itself).
pub(super) async fn run_pod_sandbox(
    cri: &Cri,
    request: RunPodSandboxRequest,
) -> CallResult<RunPodSandboxResponse> {
    let spec = sandbox_spec(&request, &cri.host)?;
    let config = request.config.unwrap_or_default();
    let id = new_cri_id()?;
    telemetry::record(CallField::PodSandboxId, &id);
    let name = SandboxRecord::name_of(&config);
    // No NRI plugin synchronizes between the record and its RunPodSandbox event.
    let _nri = cri.nri.block().await;
    let record =
        cri.store.insert::<_, CallError>(|snapshot| {
            if let Some(holder) = snapshot.sandboxes.iter().find(|s| s.name() == name) {
                return Err(Error::AlreadyExists {
                    kind: "pod sandbox",
                    id: format!("named {name} (id {}, {})", holder.id, holder.container_id),
                }
                .into());
            }
            let pod = Pod {
                name: &spec.name,
                namespace: &spec.namespace,
                labels: &config.labels,
            };
            let container_id = identity::sandbox_id(&pod, &cri.node_id, &snapshot.allocated)
                .map_err(|source| CallError::Identity {
                    method: METHOD,
                    source,
                })?;
            Ok(SandboxRecord {
                id: id.clone(),
                container_id,
                phase: SandboxPhase::Creating,
                created_at: now_nanos(),
                runtime_handler: request.runtime_handler.clone(),
                config: config.clone(),
                ips: Vec::new(),
                backend: String::new(),
            })
        })?;

    let cid = &record.container_id;
    telemetry::record(CallField::BerthId, tracing::field::display(cid));
    if let Some(metadata) = &config.metadata {
        let name = format!("{}/{}", metadata.namespace, metadata.name);
        telemetry::record(CallField::Name, name.as_str());
        telemetry::record(CallField::Attempt, metadata.attempt);
    }
    // Recorded before the backend runs anything: a crash in between leaves a record
    // whose rollback at start-up goes to the right backend.
    let backend = match cri.runtime.choose(cid, &spec).await {
        Ok(backend) => backend,
        Err(err) => return Err(abandon(&cri.store, &record, err, Ok(())).into()),
    };
    if let Err(err) = mark::<SandboxRecord>(&cri.store, &id, |r| r.backend = backend) {
        let undone = cri.runtime.remove_pod_sandbox(cid).await;
        return Err(abandon(&cri.store, &record, err, undone).into());
    }
    let status = match cri.runtime.run_pod_sandbox(cid, &spec).await {
        Ok(status) => status,
        // The backend cleaned up after itself.
        Err(err) => return Err(abandon(&cri.store, &record, err, Ok(())).into()),
    };
    // NRI plugins hear of the pod while it is still `Creating`: not listed, no
    // container can join it; one that refuses it has it torn down.
    if cri.nri.active() {
        let mut pod = record.clone();
        pod.ips = status.ips.clone();
        if let Err(err) = cri.nri.run_pod_sandbox(crate::nri::pod_of(&pod)).await {
            let undone = cri.runtime.remove_pod_sandbox(cid).await;
            return Err(abandon_nri(&cri.store, &record, err, undone));
        }
    }
    let phase = if status.state == SandboxState::Ready {
        SandboxPhase::Ready
    } else {
        SandboxPhase::NotReady
    };
    let marked = mark::<SandboxRecord>(&cri.store, &id, |r| {
        r.phase = phase;
        r.ips = status.ips.clone();
    });
    if let Err(err) = marked {
        // The sandbox runs but is not recorded as made: undo it rather than leave one
        // kubelet never hears of.
        let undone = cri.runtime.remove_pod_sandbox(cid).await;
        return Err(abandon(&cri.store, &record, err, undone).into());
    }
    Ok(RunPodSandboxResponse { pod_sandbox_id: id })
}

#[cfg(test)]
mod tests {
    use runtimes::Error;

    use super::*;
    use crate::cri::shared::sandbox_spec::tests::request;
    use crate::cri::testing::Harness;

    #[tokio::test]
    async fn runs_and_records_a_ready_sandbox_with_its_container_id() {
        let h = Harness::new().await;
        let mut r = request("web-7d9f8b6c5d-x2x9k");
        r.config.as_mut().unwrap().labels.clear();
        let id = run_pod_sandbox(&h.cri, r).await.unwrap().pod_sandbox_id;
        assert_eq!(id.len(), 64);
        let record = h.store().get::<SandboxRecord>(&id).unwrap().unwrap();
        assert_eq!(record.phase, SandboxPhase::Ready);
        // Without labels the Deployment's name is the service.
        assert_eq!(
            record.container_id.to_string(),
            "web.default-sandbox-0-on-node-a"
        );
        assert_eq!(record.ips, ["10.88.0.1"]);
        assert_eq!(record.backend, "mock");
        assert!(h.mock.holds_sandbox(&record.container_id));
        let allocated = h.store().allocated_ids().unwrap();
        assert_eq!(allocated.get(&record.container_id), Some(&id));
    }

    #[tokio::test]
    async fn a_duplicate_name_is_already_exists_and_calls_no_backend() {
        let h = Harness::new().await;
        let first = h.run_pod("web").await;
        let calls = h.mock.calls().len();
        let err = run_pod_sandbox(&h.cri, request("web")).await.unwrap_err();
        assert!(
            matches!(err, CallError::Runtime(Error::AlreadyExists { .. })),
            "{err:?}"
        );
        assert!(err.to_string().contains("web_default_uid-web_0"), "{err}");
        assert!(err.to_string().contains(&first), "{err}");
        assert_eq!(h.mock.calls().len(), calls);
        // Another attempt of the same pod is another name.
        let mut next = request("web");
        next.config
            .as_mut()
            .unwrap()
            .metadata
            .as_mut()
            .unwrap()
            .attempt = 1;
        let second = run_pod_sandbox(&h.cri, next).await.unwrap().pod_sandbox_id;
        let ids: Vec<String> = [&first, &second]
            .iter()
            .map(|id| h.sandbox_id_of(id).to_string())
            .collect();
        assert_eq!(
            ids,
            [
                "web.default-sandbox-0-on-node-a",
                "web.default-sandbox-1-on-node-a"
            ]
        );
    }

    #[tokio::test]
    async fn a_backend_failure_leaves_no_record_and_frees_the_id() {
        let h = Harness::new().await;
        h.mock
            .fail("run_pod_sandbox", || Error::backend("mock", "no netns"));
        let err = run_pod_sandbox(&h.cri, request("web")).await.unwrap_err();
        assert!(err.to_string().contains("no netns"), "{err}");
        assert!(h.store().list::<SandboxRecord>().unwrap().is_empty());
        assert!(h.store().allocated_ids().unwrap().is_empty());
        let cid = runtimes::ContainerId::parse_display("web.default-sandbox-0-on-node-a").unwrap();
        assert!(h.runtime().backend_of(&cid).is_none(), "no route is left");
    }

    #[tokio::test]
    async fn invalid_requests_call_no_backend() {
        let h = Harness::new().await;
        let err = run_pod_sandbox(&h.cri, RunPodSandboxRequest::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, CallError::Runtime(Error::InvalidSpec(_))),
            "{err:?}"
        );
        assert!(!h.called("run_pod_sandbox"));
        assert!(h.store().list::<SandboxRecord>().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_unserved_runtime_handler_is_routed_to_a_peer_and_not_recorded() {
        let h = Harness::new().await;
        let mut r = request("web");
        r.runtime_handler = "kata".into();
        let err = run_pod_sandbox(&h.cri, r).await.unwrap_err();
        assert!(
            matches!(err, CallError::Runtime(Error::RouteToPeer { .. })),
            "{err:?}"
        );
        assert!(h.store().list::<SandboxRecord>().unwrap().is_empty());
        assert!(h.store().allocated_ids().unwrap().is_empty());
    }
}
