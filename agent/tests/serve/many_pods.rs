//! 20 pods made at once through the socket, each with a running container and every
//! fourth with a hostPort, then all stopped and removed at once: the host is back to
//! where it started (mounts, namespace pins, cgroups, veths, addresses, nat rules,
//! supervisors, records).

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use berth_proto::cri::v1::*;
use berth_testkit::servers::free_port;
use futures::future::try_join_all;

use crate::world::{
    container_status, create_and_start, list_containers, list_pods, pod_ip, run_pod,
    stop_and_remove_pod, World,
};

const PODS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_pods_at_once_then_removed_leave_the_host_as_it_was() -> Result<()> {
    let world = World::new().await?;
    let berth = world.start().await?;
    let client = berth.runtime().await?;
    let before = world.host();

    let made = try_join_all((0..PODS).map(|i| {
        let ports: Vec<(u16, u16)> = if i % 4 == 0 {
            vec![(8080, free_port())]
        } else {
            vec![]
        };
        let pod_config = world.pod(&format!("many{i}"), &ports);
        let app = world.container("app", &["sleep", "1000"]);
        let mut client = client.clone();
        async move {
            let pod = run_pod(&mut client, &pod_config).await?;
            let ctr = create_and_start(&mut client, &pod, &pod_config, &app).await?;
            let ip = pod_ip(&mut client, &pod).await?;
            anyhow::Ok((pod, ctr, ip))
        }
    }))
    .await?;

    let mut client = client.clone();
    let ips: BTreeSet<&str> = made.iter().map(|(_, _, ip)| ip.as_str()).collect();
    assert_eq!(
        ips.len(),
        PODS,
        "every pod has an address of its own: {ips:?}"
    );
    assert_eq!(list_pods(&mut client).await?.len(), PODS);
    assert_eq!(list_containers(&mut client).await?.len(), PODS);
    for (_, ctr, _) in &made {
        let (status, pid) = container_status(&mut client, ctr).await?;
        assert_eq!(status.state, ContainerState::ContainerRunning as i32);
        pid.context("a running container without a pid")?;
    }
    let during = world.host();
    // Each pod: three pins, its /dev/shm, its container's rootfs; a veth, an address, a
    // supervisor; cgroups for the pod and its container.
    assert_eq!(during.pins.len(), 3 * PODS, "{during:?}");
    assert_eq!(during.mounts.len(), 5 * PODS, "{during:?}");
    assert!(during.cgroups.len() >= 2 * PODS, "{during:?}");
    assert_eq!(during.veths.len(), PODS, "{during:?}");
    assert_eq!(during.addresses.len(), PODS, "{during:?}");
    assert_eq!(during.supervisors.len(), PODS, "{during:?}");
    assert!(
        during.nat_rules.len() >= PODS / 4,
        "the hostPorts' rules: {:?}",
        during.nat_rules
    );

    try_join_all(made.iter().map(|(pod, _, _)| {
        let mut client = client.clone();
        async move { stop_and_remove_pod(&mut client, pod).await }
    }))
    .await?;
    assert!(list_pods(&mut client).await?.is_empty());
    assert!(list_containers(&mut client).await?.is_empty());
    assert_eq!(world.host(), before);
    Ok(())
}
