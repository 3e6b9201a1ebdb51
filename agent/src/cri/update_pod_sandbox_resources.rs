//! `UpdatePodSandboxResources` (in-place pod resize).

use berth_proto::cri::v1::{
    LinuxContainerResources, UpdatePodSandboxResourcesRequest, UpdatePodSandboxResourcesResponse,
};
use runtimes::{Error, Runtime};

use super::shared::objects::{in_method, resolve};
use super::Cri;
use crate::store::{SandboxPhase, SandboxRecord};

const METHOD: &str = "UpdatePodSandboxResources";

/// The CPU period a quota is measured against when none is given (CFS's default).
const DEFAULT_CPU_PERIOD: i64 = 100_000;

/// Applies the pod's new overhead plus containers' sum to its cgroup and records both
/// in the pod's config, as containerd records them in the sandbox's status. kubelet
/// calls it after resizing the containers (UpdateContainerResources) and treats a
/// failure as best effort. A pod that is not ready is only recorded: nothing of it
/// runs (containerd checks no state either).
pub(super) async fn update_pod_sandbox_resources(
    cri: &Cri,
    request: UpdatePodSandboxResourcesRequest,
) -> runtimes::Result<UpdatePodSandboxResourcesResponse> {
    let record: SandboxRecord = resolve(&cri.store, METHOD, &request.pod_sandbox_id)?;
    let overhead = request.overhead.unwrap_or_default();
    let resources = request.resources.unwrap_or_default();
    // Each part is checked on its own first, so an error names the field as sent.
    let mut parts = Vec::new();
    for (name, part) in [("overhead", &overhead), ("resources", &resources)] {
        let oci = crate::spec::resources(part, &cri.host)
            .map_err(|e| in_method(&format!("{METHOD} ({name})"), e))?;
        parts.push(crate::nri::resources_of(&oci));
    }
    let pod = crate::spec::resources(&pod_total(&overhead, &resources)?, &cri.host)
        .map_err(|e| in_method(METHOD, e))?;
    let _nri = cri.nri.block().await;
    let nri = cri.nri.active();
    if nri {
        // A plugin may refuse the change; nothing changed yet.
        let (resources, overhead) = (parts.pop(), parts.pop());
        cri.nri
            .update_pod_sandbox(
                crate::nri::pod_of(&record),
                overhead.unwrap_or_default(),
                resources.unwrap_or_default(),
            )
            .await
            .map_err(|e| Error::FailedPrecondition(format!("{METHOD}: {e}")))?;
    }
    if record.phase == SandboxPhase::Ready {
        cri.runtime
            .update_pod_sandbox_resources(&record.container_id, &pod)
            .await?;
    }
    cri.store.update::<SandboxRecord>(&record.id, |r| {
        let linux = r.config.linux.get_or_insert_with(Default::default);
        linux.overhead = Some(overhead);
        linux.resources = Some(resources);
    })?;
    if nri {
        if let Ok(Some(updated)) = cri.store.get::<SandboxRecord>(&record.id) {
            cri.nri
                .post_update_pod_sandbox(crate::nri::pod_of(&updated))
                .await;
        }
    }
    Ok(UpdatePodSandboxResourcesResponse {})
}

/// The limits of the pod's cgroup: its containers' sum plus the overhead, as kubelet
/// sizes a pod cgroup. A value the containers leave unset (0) stays unset (the cgroup
/// keeps what it has), whatever the overhead; an unlimited quota (-1) stays
/// unlimited. The overhead's quota is rescaled to the containers' period. Cpusets,
/// hugepages and unified keys are the containers'.
fn pod_total(
    overhead: &LinuxContainerResources,
    resources: &LinuxContainerResources,
) -> runtimes::Result<LinuxContainerResources> {
    let sum = |field: &str, value: i64, extra: i64| -> runtimes::Result<i64> {
        if value <= 0 || extra <= 0 {
            return Ok(value);
        }
        value.checked_add(extra).ok_or_else(|| {
            Error::InvalidSpec(format!(
                "{METHOD}: resources.{field} {value} plus overhead.{field} {extra} overflows"
            ))
        })
    };
    let period = [resources.cpu_period, overhead.cpu_period]
        .into_iter()
        .find(|p| *p > 0)
        .unwrap_or(0);
    let overhead_quota = if overhead.cpu_quota > 0 {
        let from = if overhead.cpu_period > 0 {
            overhead.cpu_period
        } else {
            DEFAULT_CPU_PERIOD
        };
        let to = if period > 0 {
            period
        } else {
            DEFAULT_CPU_PERIOD
        };
        // i128: quota × period of valid i64s cannot overflow it.
        i64::try_from(i128::from(overhead.cpu_quota) * i128::from(to) / i128::from(from))
            .unwrap_or(i64::MAX)
    } else {
        0
    };
    Ok(LinuxContainerResources {
        cpu_period: period,
        cpu_quota: sum("cpu_quota", resources.cpu_quota, overhead_quota)?,
        cpu_shares: sum("cpu_shares", resources.cpu_shares, overhead.cpu_shares)?,
        memory_limit_in_bytes: sum(
            "memory_limit_in_bytes",
            resources.memory_limit_in_bytes,
            overhead.memory_limit_in_bytes,
        )?,
        // A pod-level OOM score means nothing: each process has its own.
        oom_score_adj: 0,
        memory_swap_limit_in_bytes: 0,
        ..resources.clone()
    })
}

#[cfg(test)]
mod tests {
    use berth_proto::cri::v1::StopPodSandboxRequest;

    use super::*;
    use crate::cri::shared::testing::Harness;
    use crate::cri::stop_pod_sandbox::stop_pod_sandbox;

    fn request(
        id: &str,
        overhead: Option<LinuxContainerResources>,
        resources: LinuxContainerResources,
    ) -> UpdatePodSandboxResourcesRequest {
        UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: id.into(),
            overhead,
            resources: Some(resources),
        }
    }

    fn containers() -> LinuxContainerResources {
        LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 150_000,
            cpu_shares: 1536,
            memory_limit_in_bytes: 256 << 20,
            cpuset_cpus: "0".into(),
            oom_score_adj: 500,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn applies_overhead_plus_containers_to_the_pod_and_records_both() {
        let h = Harness::new().await;
        let pod = h.run_pod("web").await;
        let overhead = LinuxContainerResources {
            cpu_period: 50_000,
            cpu_quota: 5_000,
            cpu_shares: 10,
            memory_limit_in_bytes: 16 << 20,
            ..Default::default()
        };
        update_pod_sandbox_resources(&h.cri, request(&pod, Some(overhead.clone()), containers()))
            .await
            .unwrap();
        let applied = h.mock.pod_resources(&h.sandbox_id_of(&pod)).unwrap();
        let cpu = applied.cpu().clone().unwrap();
        // The overhead's 5ms per 50ms is 10ms per the containers' 100ms.
        assert_eq!(
            (cpu.period(), cpu.quota(), cpu.shares()),
            (Some(100_000), Some(160_000), Some(1546))
        );
        assert_eq!(cpu.cpus().as_deref(), Some("0"));
        assert_eq!(applied.memory().unwrap().limit(), Some(272 << 20));
        let record = h.store().get::<SandboxRecord>(&pod).unwrap().unwrap();
        let linux = record.config.linux.unwrap();
        assert_eq!(linux.overhead, Some(overhead));
        assert_eq!(linux.resources, Some(containers()));
    }

    #[test]
    fn unset_values_stay_unset_and_unlimited_stays_unlimited() {
        let only_overhead = LinuxContainerResources {
            cpu_quota: 1_000,
            cpu_shares: 2,
            memory_limit_in_bytes: 1 << 20,
            ..Default::default()
        };
        let unlimited = LinuxContainerResources {
            cpu_quota: -1,
            ..Default::default()
        };
        let total = pod_total(&only_overhead, &unlimited).unwrap();
        assert_eq!(
            (
                total.cpu_quota,
                total.cpu_shares,
                total.memory_limit_in_bytes
            ),
            (-1, 0, 0)
        );
    }

    #[tokio::test]
    async fn bad_values_and_overflows_are_invalid_and_reach_no_backend() {
        let h = Harness::new().await;
        let pod = h.run_pod("web").await;
        let negative = LinuxContainerResources {
            memory_limit_in_bytes: -5,
            ..Default::default()
        };
        let huge = LinuxContainerResources {
            memory_limit_in_bytes: i64::MAX,
            ..Default::default()
        };
        let bad_cpuset = LinuxContainerResources {
            cpuset_cpus: "0-a".into(),
            ..Default::default()
        };
        for (overhead, resources, field) in [
            (None, negative.clone(), "memory_limit_in_bytes"),
            (Some(negative), containers(), "memory_limit_in_bytes"),
            (Some(containers()), huge, "overflows"),
            (None, bad_cpuset, "cpuset_cpus"),
        ] {
            let err = update_pod_sandbox_resources(&h.cri, request(&pod, overhead, resources))
                .await
                .unwrap_err();
            assert!(matches!(err, Error::InvalidSpec(_)), "{err:?}");
            assert!(err.to_string().contains(field), "{err}");
            assert!(err.to_string().contains(METHOD), "{err}");
        }
        assert!(!h.called("update_pod_sandbox_resources"));
        let record = h.store().get::<SandboxRecord>(&pod).unwrap().unwrap();
        assert_eq!(record.config.linux.and_then(|l| l.resources), None);
    }

    #[tokio::test]
    async fn an_unknown_pod_is_not_found() {
        let h = Harness::new().await;
        let err = update_pod_sandbox_resources(&h.cri, request("no-such-pod", None, containers()))
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{err:?}");
    }

    #[tokio::test]
    async fn a_stopped_pod_is_recorded_but_not_resized() {
        let h = Harness::new().await;
        let pod = h.run_pod("web").await;
        stop_pod_sandbox(
            &h.cri,
            StopPodSandboxRequest {
                pod_sandbox_id: pod.clone(),
            },
        )
        .await
        .unwrap();
        update_pod_sandbox_resources(&h.cri, request(&pod, None, containers()))
            .await
            .unwrap();
        assert!(!h.called("update_pod_sandbox_resources"));
        let record = h.store().get::<SandboxRecord>(&pod).unwrap().unwrap();
        assert_eq!(record.config.linux.unwrap().resources, Some(containers()));
    }
}
