//! `UpdateContainerResources`.

use k8s_cri::v1::{
    LinuxContainerResources, UpdateContainerResourcesRequest, UpdateContainerResourcesResponse,
};
use oci_spec::runtime::{LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxResources};
use runtimes::{Error, Runtime};

use super::objects::resolve;
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
    let resources = linux_resources(&linux)?;
    cri.runtime
        .update_container_resources(&record.container_id, &resources)
        .await?;
    cri.store
        .update::<ContainerRecord>(&record.id, |r| r.resources = Some(linux))?;
    Ok(UpdateContainerResourcesResponse {})
}

// INTEGRATOR: this CRI → OCI resources conversion belongs in `crate::spec` (as
// `spec::resources`, shared with CreateContainer's spec); it lives here until the
// spec builder has it. Zero means "not set", as in CRI.
/// CRI's Linux resources as OCI's; a negative size, share or period is refused.
pub(super) fn linux_resources(r: &LinuxContainerResources) -> runtimes::Result<LinuxResources> {
    let unsigned = |field: &str, value: i64| {
        u64::try_from(value)
            .map_err(|_| Error::InvalidSpec(format!("{METHOD}: linux.{field} {value} is negative")))
    };
    let set = |value: u64| (value != 0).then_some(value);
    let mut cpu = LinuxCpu::default();
    cpu.set_shares(set(unsigned("cpu_shares", r.cpu_shares)?));
    cpu.set_period(set(unsigned("cpu_period", r.cpu_period)?));
    cpu.set_quota((r.cpu_quota != 0).then_some(r.cpu_quota));
    cpu.set_cpus((!r.cpuset_cpus.is_empty()).then(|| r.cpuset_cpus.clone()));
    cpu.set_mems((!r.cpuset_mems.is_empty()).then(|| r.cpuset_mems.clone()));
    let mut memory = LinuxMemory::default();
    let limit = unsigned("memory_limit_in_bytes", r.memory_limit_in_bytes)?;
    memory.set_limit(set(limit).map(|_| r.memory_limit_in_bytes));
    // -1 is "unlimited swap", as in OCI.
    if r.memory_swap_limit_in_bytes != -1 {
        unsigned("memory_swap_limit_in_bytes", r.memory_swap_limit_in_bytes)?;
    }
    memory.set_swap((r.memory_swap_limit_in_bytes != 0).then_some(r.memory_swap_limit_in_bytes));
    let hugepages = r
        .hugepage_limits
        .iter()
        .map(|h| {
            let limit = i64::try_from(h.limit).map_err(|_| {
                Error::InvalidSpec(format!(
                    "{METHOD}: linux.hugepage_limits {} limit {} is too large",
                    h.page_size, h.limit
                ))
            })?;
            let mut page = LinuxHugepageLimit::default();
            page.set_page_size(h.page_size.clone());
            page.set_limit(limit);
            Ok(page)
        })
        .collect::<runtimes::Result<Vec<_>>>()?;
    let mut resources = LinuxResources::default();
    resources.set_cpu(Some(cpu));
    resources.set_memory(Some(memory));
    resources.set_hugepage_limits((!hugepages.is_empty()).then_some(hugepages));
    resources.set_unified((!r.unified.is_empty()).then(|| r.unified.clone()));
    Ok(resources)
}

#[cfg(test)]
mod tests {
    use k8s_cri::v1::{ContainerStatusRequest, HugepageLimit};

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
        assert!(
            err.to_string().contains("memory_limit_in_bytes -1"),
            "{err}"
        );
        assert!(!h.called("update_container_resources"));
        let unknown = update_container_resources(&h.cri, request("feed", Default::default()))
            .await
            .unwrap_err();
        assert!(unknown.is_not_found());
    }

    #[test]
    fn zero_is_unset_and_hugepages_and_unified_pass_through() {
        let empty = linux_resources(&LinuxContainerResources::default()).unwrap();
        let cpu = empty.cpu().clone().unwrap();
        assert_eq!(
            (cpu.shares(), cpu.quota(), cpu.period()),
            (None, None, None)
        );
        assert_eq!(empty.memory().unwrap().limit(), None);
        assert!(empty.hugepage_limits().is_none() && empty.unified().is_none());
        let full = linux_resources(&LinuxContainerResources {
            memory_swap_limit_in_bytes: -1,
            hugepage_limits: vec![HugepageLimit {
                page_size: "2MB".into(),
                limit: 4 << 20,
            }],
            unified: [("memory.high".to_string(), "1000000".to_string())].into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(full.memory().unwrap().swap(), Some(-1));
        assert_eq!(full.hugepage_limits().as_ref().unwrap()[0].limit(), 4 << 20);
        assert_eq!(full.unified().as_ref().unwrap()["memory.high"], "1000000");
        assert!(linux_resources(&LinuxContainerResources {
            memory_swap_limit_in_bytes: -2,
            ..Default::default()
        })
        .is_err());
    }
}
