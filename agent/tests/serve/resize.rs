//! In-place pod resize as kubelet does it: `UpdateContainerResources` on the container,
//! then `UpdatePodSandboxResources` on its pod. The pod's own cgroup files (read on the
//! host) take the overhead plus the containers' sum, the container's its own; nothing
//! restarts. Bad values and unknown pods are refused with the right codes and change
//! nothing.

use std::path::PathBuf;

use anyhow::{Context, Result};
use berth_proto::cri::v1::*;
use tonic::Code;

use crate::world::{container_status, create_and_start, exec, pod_status, run_pod, Client};
use crate::world::{stop_and_remove_pod, World};

/// `file` of the cgroup `cgroup` in the v1 hierarchy of `controller`, trimmed.
fn read(controller: &str, cgroup: &str, file: &str) -> Result<String> {
    let path = PathBuf::from("/sys/fs/cgroup")
        .join(controller)
        .join(cgroup.trim_start_matches('/'))
        .join(file);
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    Ok(text.trim().to_string())
}

/// CPU quota, period, shares, memory limit and cpus of `cgroup`.
fn limits(cgroup: &str) -> Result<[String; 5]> {
    Ok([
        read("cpu", cgroup, "cpu.cfs_quota_us")?,
        read("cpu", cgroup, "cpu.cfs_period_us")?,
        read("cpu", cgroup, "cpu.shares")?,
        read("memory", cgroup, "memory.limit_in_bytes")?,
        read("cpuset", cgroup, "cpuset.cpus")?,
    ])
}

/// The cgroup path the verbose status of the pod or container names.
async fn cgroup_of(
    client: &mut Client,
    pod: Option<&str>,
    container: Option<&str>,
) -> Result<String> {
    let info = match (pod, container) {
        (Some(pod), _) => pod_status(client, pod).await?.info,
        (_, Some(id)) => {
            client
                .container_status(ContainerStatusRequest {
                    container_id: id.into(),
                    verbose: true,
                })
                .await?
                .into_inner()
                .info
        }
        _ => unreachable!(),
    };
    let info: serde_json::Value = serde_json::from_str(info.get("info").context("no info")?)?;
    Ok(info["cgroupPath"]
        .as_str()
        .context("no cgroupPath")?
        .to_string())
}

#[tokio::test]
async fn a_running_pod_is_resized_in_place() -> Result<()> {
    let world = World::new().await?;
    // cgroup v1 (this host's, a hybrid one) is what this test reads.
    anyhow::ensure!(
        std::path::Path::new("/sys/fs/cgroup/cpu/cpu.shares").is_file(),
        "this test reads cgroup v1 files"
    );
    let berth = world.start().await?;
    let mut client = berth.runtime().await?;
    let pod_config = world.pod("resized", &[]);
    let pod = run_pod(&mut client, &pod_config).await?;
    let app = create_and_start(
        &mut client,
        &pod,
        &pod_config,
        &world.container("app", &["sleep", "600"]),
    )
    .await?;
    let (before, pid) = container_status(&mut client, &app).await?;
    let pod_cgroup = cgroup_of(&mut client, Some(&pod), None).await?;
    let app_cgroup = cgroup_of(&mut client, None, Some(&app)).await?;
    let unresized = limits(&pod_cgroup)?;
    assert_eq!(unresized[0], "-1", "{unresized:?}");

    // kubelet's order for a shrink: the container first, then its pod.
    let app_limits = LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_shares: 512,
        memory_limit_in_bytes: 128 << 20,
        cpuset_cpus: "0".into(),
        ..Default::default()
    };
    client
        .update_container_resources(UpdateContainerResourcesRequest {
            container_id: app.clone(),
            linux: Some(app_limits.clone()),
            ..Default::default()
        })
        .await?;
    let overhead = LinuxContainerResources {
        cpu_quota: 10_000,
        cpu_shares: 2,
        memory_limit_in_bytes: 16 << 20,
        ..Default::default()
    };
    client
        .update_pod_sandbox_resources(UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: pod.clone(),
            overhead: Some(overhead.clone()),
            resources: Some(app_limits.clone()),
        })
        .await?;
    let resized = limits(&pod_cgroup)?;
    let expected = [
        "60000".to_string(),
        "100000".into(),
        "514".into(),
        (144u64 << 20).to_string(),
        "0".into(),
    ];
    assert_eq!(resized, expected, "pod cgroup {pod_cgroup}");
    assert_eq!(
        limits(&app_cgroup)?,
        [
            "50000".to_string(),
            "100000".into(),
            "512".into(),
            (128u64 << 20).to_string(),
            "0".into()
        ],
        "container cgroup {app_cgroup}"
    );

    // Nothing restarted: same process, same start, still answering.
    let (after, pid_after) = container_status(&mut client, &app).await?;
    assert_eq!(after.state, ContainerState::ContainerRunning as i32);
    assert_eq!((after.started_at, pid_after), (before.started_at, pid));
    let out = exec(&mut client, &app, &["cat", "/proc/self/status"]).await?;
    assert_eq!(out.exit_code, 0);

    // A negative limit and an unknown pod: refused, the cgroup untouched.
    let bad = LinuxContainerResources {
        memory_limit_in_bytes: -1,
        ..Default::default()
    };
    let refused = client
        .update_pod_sandbox_resources(UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: pod.clone(),
            overhead: None,
            resources: Some(bad),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    let unknown = client
        .update_pod_sandbox_resources(UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: "no-such-pod".into(),
            overhead: None,
            resources: Some(app_limits.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    assert_eq!(limits(&pod_cgroup)?, expected);

    // Growing back: the pod first, then the container, as kubelet grows.
    let grown = LinuxContainerResources {
        cpu_quota: 200_000,
        memory_limit_in_bytes: 256 << 20,
        cpuset_cpus: String::new(),
        ..app_limits
    };
    client
        .update_pod_sandbox_resources(UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: pod.clone(),
            overhead: Some(overhead),
            resources: Some(grown.clone()),
        })
        .await?;
    client
        .update_container_resources(UpdateContainerResourcesRequest {
            container_id: app.clone(),
            linux: Some(grown),
            ..Default::default()
        })
        .await?;
    let pod_now = limits(&pod_cgroup)?;
    assert_eq!(pod_now[0], "210000");
    assert_eq!(pod_now[3], (272u64 << 20).to_string());
    let app_now = limits(&app_cgroup)?;
    assert_eq!(
        (app_now[0].as_str(), app_now[3].clone()),
        ("200000", (256u64 << 20).to_string())
    );
    let (still, _) = container_status(&mut client, &app).await?;
    assert_eq!(still.started_at, before.started_at);

    stop_and_remove_pod(&mut client, &pod).await?;
    // A removed pod is unknown.
    let gone = client
        .update_pod_sandbox_resources(UpdatePodSandboxResourcesRequest {
            pod_sandbox_id: pod,
            overhead: None,
            resources: None,
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    Ok(())
}
