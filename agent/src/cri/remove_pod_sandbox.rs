//! `RemovePodSandbox`.

use berth_proto::cri::v1::{RemovePodSandboxRequest, RemovePodSandboxResponse};
use runtimes::Runtime;

use super::shared::objects::{find, visible};
use super::Cri;
use crate::store::{ContainerRecord, SandboxPhase, SandboxRecord};

const METHOD: &str = "RemovePodSandbox";

/// Removes the pod: its backend removes the sandbox and everything it holds (stopping
/// it first if it runs, as the `Runtime` contract says), then the agent drops the
/// records of its containers and of the pod, with their ContainerIds. Removing an
/// unknown pod succeeds. When the backend fails every record stays, so kubelet's retry
/// finishes the job.
pub(super) async fn remove_pod_sandbox(
    cri: &Cri,
    request: RemovePodSandboxRequest,
) -> runtimes::Result<RemovePodSandboxResponse> {
    let _nri = cri.nri.block().await;
    let Some(record) = find::<SandboxRecord>(&cri.store, METHOD, &request.pod_sandbox_id)? else {
        return Ok(RemovePodSandboxResponse {});
    };
    if record.phase == SandboxPhase::Ready && cri.nri.active() {
        super::stop_pod_sandbox::nri_stop(cri, &record).await?;
    }
    match cri.runtime.remove_pod_sandbox(&record.container_id).await {
        Err(err) if !err.is_not_found() => return Err(err),
        _ => {}
    }
    let removed: Vec<ContainerRecord> = visible::<ContainerRecord>(&cri.store)?
        .into_iter()
        .filter(|c| c.sandbox_id == record.id)
        .collect();
    let containers: Vec<String> = removed.iter().map(|c| c.id.clone()).collect();
    cri.store.remove_pod(&record.id, &containers)?;
    for id in containers.iter().chain([&record.id]) {
        cri.cpu.forget(id);
    }
    cri.encoded_containers
        .forget(containers.iter().map(String::as_str));
    cri.encoded_pods.forget([record.id.as_str()]);
    crate::memory::freed();
    if cri.nri.active() {
        let pod = crate::nri::pod_of(&record);
        for container in &removed {
            let container = crate::nri::container_of(container);
            cri.nri.stop_container(pod.clone(), container.clone()).await;
            cri.nri
                .container_event(
                    berth_proto::nri::Event::RemoveContainer,
                    pod.clone(),
                    container,
                )
                .await;
        }
        cri.nri.remove_pod_sandbox(pod).await;
    }
    Ok(RemovePodSandboxResponse {})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::testing::Harness;

    fn request(id: &str) -> RemovePodSandboxRequest {
        RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        }
    }

    #[tokio::test]
    async fn removes_a_ready_pod_with_its_containers_and_ids() {
        let h = Harness::new().await;
        let pod = h.run_pod("web").await;
        h.start(&pod, "a").await;
        h.create(&pod, "b").await;
        let other = h.run_pod("db").await;
        let kept = h.start(&other, "a").await;
        let cid = h.sandbox_id_of(&pod);
        remove_pod_sandbox(&h.cri, request(&pod)).await.unwrap();
        assert!(!h.mock.holds_sandbox(&cid));
        assert!(h.store().get::<SandboxRecord>(&pod).unwrap().is_none());
        let left: Vec<String> = h
            .store()
            .list::<ContainerRecord>()
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(left, [kept]);
        let ids: Vec<String> = h
            .store()
            .allocated_ids()
            .unwrap()
            .into_keys()
            .map(|i| i.to_string())
            .collect();
        assert_eq!(
            ids,
            ["db.default-a-0-on-node-a", "db.default-sandbox-0-on-node-a"]
        );
        assert_eq!(h.store().routes().unwrap().len(), 2);
        assert!(h.runtime().backend_of(&cid).is_none());
        // Idempotent, and fine for unknown ids.
        remove_pod_sandbox(&h.cri, request(&pod)).await.unwrap();
        remove_pod_sandbox(&h.cri, request("no-such-pod"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn the_backend_removes_the_containers_with_the_pod() {
        let h = Harness::new().await;
        let pod = h.run_pod("web").await;
        h.start(&pod, "a").await;
        h.create(&pod, "b").await;
        remove_pod_sandbox(&h.cri, request(&pod)).await.unwrap();
        let ops: Vec<_> = h.mock.calls().into_iter().map(|c| c.operation).collect();
        assert!(
            !ops.iter()
                .any(|op| ["stop_container", "remove_container", "stop_pod_sandbox"].contains(op)),
            "{ops:?}"
        );
        assert_eq!(ops.last(), Some(&"remove_pod_sandbox"));
    }

    #[tokio::test]
    async fn a_failed_removal_keeps_the_pod_for_a_retry() {
        let h = Harness::new().await;
        let pod = h.run_pod("web").await;
        let container = h.create(&pod, "a").await;
        h.mock.fail("remove_pod_sandbox", || {
            runtimes::Error::backend("mock", "umount busy")
        });
        let err = remove_pod_sandbox(&h.cri, request(&pod)).await.unwrap_err();
        assert!(err.to_string().contains("umount busy"), "{err}");
        assert!(h.store().get::<SandboxRecord>(&pod).unwrap().is_some());
        assert!(h
            .store()
            .get::<ContainerRecord>(&container)
            .unwrap()
            .is_some());
        assert!(!h.called("remove_container"));
    }
}
