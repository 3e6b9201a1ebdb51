//! `UpdateContainerResources`.

use berth_proto::cri::v1::{UpdateContainerResourcesRequest, UpdateContainerResourcesResponse};
use runtimes::{Error, Runtime};

use super::shared::objects::resolve;
use super::Cri;
use crate::store::ContainerRecord;

const METHOD: &str = "UpdateContainerResources";

/// Applies new Linux resource limits to the container and records them (its status
/// reports them). A request without Linux resources changes nothing; Windows
/// resources are refused.
pub(super) async fn update_container_resources(
    cri: &Cri,
    request: UpdateContainerResourcesRequest,
) -> runtimes::Result<UpdateContainerResourcesResponse> {
    let record: ContainerRecord = resolve(&cri.store, METHOD, &request.container_id)?;
    let Some(linux) = request.linux else {
        if request.windows.is_some() {
            return Err(Error::InvalidSpec(format!(
                "{METHOD}: container {} ({}) is a Linux container; windows resources do not apply",
                record.id, record.container_id
            )));
        }
        return Ok(UpdateContainerResourcesResponse {});
    };
    let mut resources = crate::spec::resources(&linux, &cri.host)?;
    let _nri = cri.nri.block().await;
    let nri = cri.nri_objects(&record);
    if let Some((pod, container)) = nri.clone() {
        // A plugin may refuse the update or change it; nothing changed yet.
        let refused = |e: crate::nri::NriError| Error::FailedPrecondition(format!("{METHOD}: {e}"));
        let requested = crate::nri::resources_of(&resources);
        let mut updates = cri
            .nri
            .update_container(pod, container, Some(requested))
            .await
            .map_err(refused)?;
        if let Some(at) = updates
            .updates
            .iter()
            .position(|(id, _, _)| id == &record.id)
        {
            let (_, own, _) = updates.updates.remove(at);
            own.apply_to(&mut resources, cri.host.swap_controller)
                .map_err(refused)?;
        }
        cri.apply_nri_updates(METHOD, &updates).await?;
    }
    cri.runtime
        .update_container_resources(&record.container_id, &resources)
        .await?;
    cri.store
        .update::<ContainerRecord>(&record.id, |r| r.resources = Some(linux))?;
    if let Some((pod, container)) = nri {
        cri.nri
            .container_event(berth_proto::nri::Event::PostUpdateContainer, pod, container)
            .await;
    }
    Ok(UpdateContainerResourcesResponse {})
}

#[cfg(test)]
mod tests {
    use berth_proto::cri::v1::{ContainerStatusRequest, LinuxContainerResources};

    use super::*;
    use crate::cri::container_status::container_status;
    use crate::cri::testing::Harness;

    fn request(id: &str, linux: LinuxContainerResources) -> UpdateContainerResourcesRequest {
        UpdateContainerResourcesRequest {
            container_id: id.into(),
            linux: Some(linux),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn applies_and_reports_new_limits() {
        let h = Harness::new().await;
        let (_, id) = h.running_app().await;
        let linux = LinuxContainerResources {
            cpu_shares: 512,
            cpu_quota: 50_000,
            cpu_period: 100_000,
            memory_limit_in_bytes: 64 << 20,
            cpuset_cpus: "0".into(),
            ..Default::default()
        };
        update_container_resources(&h.cri, request(&id, linux.clone()))
            .await
            .unwrap();
        let cid = h.container_id_of(&id);
        let applied = h.mock.container_resources(&cid).unwrap();
        let cpu = applied.cpu().clone().unwrap();
        assert_eq!(
            (cpu.shares(), cpu.quota(), cpu.period()),
            (Some(512), Some(50_000), Some(100_000))
        );
        assert_eq!(cpu.cpus().as_deref(), Some("0"));
        assert_eq!(applied.memory().unwrap().limit(), Some(64 << 20));
        let status = container_status(
            &h.cri,
            ContainerStatusRequest {
                container_id: id,
                verbose: false,
            },
        )
        .await
        .unwrap();
        assert_eq!(status.status.unwrap().resources.unwrap().linux, Some(linux));
    }

    #[tokio::test]
    async fn a_negative_memory_limit_is_refused_before_the_backend() {
        let h = Harness::new().await;
        let (_, id) = h.running_app().await;
        let linux = LinuxContainerResources {
            memory_limit_in_bytes: -1,
            ..Default::default()
        };
        let err = update_container_resources(&h.cri, request(&id, linux))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidSpec(_)), "{err:?}");
        assert!(err.to_string().contains("memory_limit_in_bytes"), "{err}");
        assert!(!h.called("update_container_resources"));
        let unknown =
            update_container_resources(&h.cri, request("no-such-container", Default::default()))
                .await
                .unwrap_err();
        assert!(unknown.is_not_found());
    }
}
