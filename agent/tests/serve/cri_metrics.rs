//! `ListMetricDescriptors` and `ListPodSandboxMetrics` on a real pod, shaped as
//! critest's metrics specs ask: a running container with CPU and memory limits that
//! wrote a few files.

use std::collections::HashMap;

use anyhow::{Context, Result};
use berth_proto::cri::v1::*;

use crate::world::{create_and_start, exec, run_pod, stop_and_remove_pod, World};

#[tokio::test]
async fn a_running_pod_has_metrics_labelled_as_described() -> Result<()> {
    let world = World::new().await?;
    let berth = world.start().await?;
    let mut client = berth.runtime().await?;
    let pod_config = world.pod("measured", &[]);
    let pod = run_pod(&mut client, &pod_config).await?;
    let mut config = world.container("app", &["sleep", "60"]);
    config.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 20_000,
            cpu_shares: 1024,
            memory_limit_in_bytes: 64 << 20,
            memory_swap_limit_in_bytes: 64 << 20,
            ..Default::default()
        }),
        ..Default::default()
    });
    let container = create_and_start(&mut client, &pod, &pod_config, &config).await?;
    let wrote = exec(
        &mut client,
        &container,
        &[
            "sh",
            "-c",
            "mkdir -p /tmp/t && for i in 1 2 3; do echo hi > /tmp/t/$i; done",
        ],
    )
    .await?;
    assert_eq!(wrote.exit_code, 0, "{wrote:?}");

    let descriptors = client
        .list_metric_descriptors(ListMetricDescriptorsRequest {})
        .await?
        .into_inner()
        .descriptors;
    let keys: HashMap<String, usize> = descriptors
        .iter()
        .map(|d| (d.name.clone(), d.label_keys.len()))
        .collect();
    let answer = client
        .list_pod_sandbox_metrics(ListPodSandboxMetricsRequest {})
        .await?
        .into_inner();
    let metrics = answer
        .pod_metrics
        .iter()
        .find(|p| p.pod_sandbox_id == pod)
        .context("no metrics of the pod")?;
    assert_eq!(metrics.container_metrics.len(), 1, "{metrics:?}");
    assert_eq!(metrics.container_metrics[0].container_id, container);
    let all: Vec<&Metric> = metrics
        .metrics
        .iter()
        .chain(metrics.container_metrics.iter().flat_map(|c| &c.metrics))
        .collect();
    for m in &all {
        let want = keys
            .get(&m.name)
            .with_context(|| format!("{} undescribed", m.name))?;
        assert_eq!(m.label_values.len(), *want, "{m:?}");
    }
    let value = |name: &str| {
        all.iter()
            .find(|m| m.name == name)
            .and_then(|m| m.value)
            .map(|v| v.value)
            .with_context(|| format!("no {name}"))
    };
    assert!(value("container_memory_working_set_bytes")? > 0);
    assert!(value("container_processes")? >= 1);
    assert!(value("container_fs_usage_bytes")? > 0);
    assert!(value("container_start_time_seconds")? > 0);
    value("container_network_receive_bytes_total")?;
    assert_eq!(value("container_spec_memory_limit_bytes")?, 64 << 20);
    assert_eq!(value("container_spec_cpu_shares")?, 1024);
    assert_eq!(value("container_spec_cpu_period")?, 100_000);
    let unfilled: Vec<&str> = descriptors
        .iter()
        .map(|d| d.name.as_str())
        .filter(|n| !all.iter().any(|m| m.name == *n))
        .collect();
    eprintln!("described but without a value here: {unfilled:?}");

    stop_and_remove_pod(&mut client, &pod).await?;
    Ok(())
}
