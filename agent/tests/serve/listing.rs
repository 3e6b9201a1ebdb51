//! ListContainers and ListPodSandbox as kubelet's PLEG uses them (issue 12): a container
//! that exits by itself is listed exited without anyone asking its status, and (ignored,
//! a measurement, not a test) the p50 of the listings with 20 pods of 10 containers.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use berth_proto::cri::v1::*;

use crate::world::{create_and_start, list_containers, remove_all_pods, run_pod, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_that_exits_by_itself_is_listed_exited() -> Result<()> {
    let world = World::new().await?;
    let berth = world.start().await?;
    let mut client = berth.runtime().await?;
    let pod_config = world.pod("short", &[]);
    let pod = run_pod(&mut client, &pod_config).await?;
    let config = world.container("brief", &["sleep", "2"]);
    let id = create_and_start(&mut client, &pod, &pod_config, &config).await?;
    let state_of = |containers: Vec<Container>| {
        containers
            .into_iter()
            .find(|c| c.id == id)
            .map(|c| c.state())
    };
    assert_eq!(
        state_of(list_containers(&mut client).await?),
        Some(ContainerState::ContainerRunning)
    );
    // Only listings from here on, as kubelet's relist: no ContainerStatus.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = state_of(list_containers(&mut client).await?);
        if state == Some(ContainerState::ContainerExited) {
            break;
        }
        if Instant::now() > deadline {
            bail!("container {id} still listed {state:?} 8 s after it exited");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let by_state = client
        .list_containers(ListContainersRequest {
            filter: Some(ContainerFilter {
                state: Some(ContainerStateValue {
                    state: ContainerState::ContainerExited as i32,
                }),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .containers;
    assert_eq!(by_state.len(), 1);
    remove_all_pods(&mut client).await?;
    Ok(())
}

/// p50 and p90 of `samples`, in ms.
fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |p: usize| samples[(samples.len() * p / 100).min(samples.len() - 1)];
    (at(50).as_secs_f64() * 1e3, at(90).as_secs_f64() * 1e3)
}

/// A measurement, not a test: `LIST_LOAD_PODS` pods (20) of `LIST_LOAD_CONTAINERS` (10)
/// sleeping containers, then 200 of each listing; prints p50 and p90.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run it by name with --ignored"]
async fn list_load() -> Result<()> {
    let count = |var: &str, default: usize| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (pods, per_pod) = (
        count("LIST_LOAD_PODS", 20),
        count("LIST_LOAD_CONTAINERS", 10),
    );
    let world = World::new().await?;
    let berth = world.start().await?;
    let mut client = berth.runtime().await?;
    let mut pod_ids = Vec::new();
    for p in 0..pods {
        let pod_config = world.pod(&format!("load{p}"), &[]);
        let pod = run_pod(&mut client, &pod_config).await?;
        for c in 0..per_pod {
            let config = world.container(&format!("c{c}"), &["sleep", "3600"]);
            create_and_start(&mut client, &pod, &pod_config, &config).await?;
        }
        pod_ids.push(pod);
    }
    let one_pod = pod_ids[pods / 2].clone();
    let rounds = 200;
    let (mut all, mut pods_listed, mut by_pod) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        let n = client
            .list_containers(ListContainersRequest::default())
            .await?
            .into_inner()
            .containers
            .len();
        all.push(t.elapsed());
        assert_eq!(n, pods * per_pod);
        let t = Instant::now();
        client
            .list_pod_sandbox(ListPodSandboxRequest::default())
            .await?;
        pods_listed.push(t.elapsed());
        let t = Instant::now();
        client
            .list_containers(ListContainersRequest {
                filter: Some(ContainerFilter {
                    pod_sandbox_id: one_pod.clone(),
                    ..Default::default()
                }),
            })
            .await?;
        by_pod.push(t.elapsed());
    }
    for (what, samples) in [
        ("ListContainers", all),
        ("ListPodSandbox", pods_listed),
        ("ListContainers(pod)", by_pod),
    ] {
        let (p50, p90) = percentiles(samples);
        println!(
            "list_load {pods}x{per_pod}: {what}: p50 {p50:.2} ms, p90 {p90:.2} ms ({rounds} calls)"
        );
    }
    remove_all_pods(&mut client).await?;
    Ok(())
}
