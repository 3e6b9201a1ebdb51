//! berth killed with SIGKILL, then restarted on the same state: running containers
//! live on under their supervisors and are served again (same pids); a container that
//! exited while no berth ran reports its real exit code and finish time; a kill in the
//! middle of many RunPodSandbox and CreateContainer calls leaves nothing half-made
//! visible, and the restart cleans up what those calls had made.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use berth_proto::cri::v1::*;
use berth_testkit::servers::free_port;

use crate::world::{
    container_status, create, create_and_start, list_containers, list_pods, pod_ip,
    remove_all_pods, run_pod, wait_exited, Client, World,
};

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

pub fn alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_pods_survive_a_kill_9_of_berth() -> Result<()> {
    let world = World::new().await?;
    let mut berth = world.start().await?;
    let mut client = berth.runtime().await?;
    let before = world.host();

    let web_config = world.pod("web", &[]);
    let web = run_pod(&mut client, &web_config).await?;
    let db_config = world.pod("db", &[]);
    let db = run_pod(&mut client, &db_config).await?;
    let loop_forever = ["sh", "-c", "while true; do sleep 1; done"];
    let server = world.container("server", &loop_forever);
    let server = create_and_start(&mut client, &web, &web_config, &server).await?;
    let short = world.container("short", &["sh", "-c", "sleep 3; exit 7"]);
    let short = create_and_start(&mut client, &web, &web_config, &short).await?;
    let store = world.container("store", &loop_forever);
    let store = create_and_start(&mut client, &db, &db_config, &store).await?;
    let mut pids = Vec::new();
    for id in [&server, &short, &store] {
        let (status, pid) = container_status(&mut client, id).await?;
        assert_eq!(status.state, ContainerState::ContainerRunning as i32);
        pids.push(pid.context("no pid in the verbose status")?);
    }
    let ips = (
        pod_ip(&mut client, &web).await?,
        pod_ip(&mut client, &db).await?,
    );
    drop(client);

    berth.kill9().await?;
    let killed_at = now_nanos();
    // Down for longer than the short container lives.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert!(!alive(pids[1]), "the short container still runs");
    let berth = world.start_as("berth-restarted").await?;
    let restarted_at = now_nanos();
    let mut client = berth.runtime().await?;

    let pods = list_pods(&mut client).await?;
    let listed: BTreeSet<(String, i32)> = pods.iter().map(|p| (p.id.clone(), p.state)).collect();
    let ready = PodSandboxState::SandboxReady as i32;
    assert_eq!(
        listed,
        BTreeSet::from([(web.clone(), ready), (db.clone(), ready)])
    );
    assert_eq!(
        (
            pod_ip(&mut client, &web).await?,
            pod_ip(&mut client, &db).await?
        ),
        ips
    );
    let containers = list_containers(&mut client).await?;
    let states: BTreeSet<(String, String, i32)> = containers
        .iter()
        .map(|c| (c.id.clone(), c.pod_sandbox_id.clone(), c.state))
        .collect();
    let (running, exited) = (
        ContainerState::ContainerRunning as i32,
        ContainerState::ContainerExited as i32,
    );
    let expected = BTreeSet::from([
        (server.clone(), web.clone(), running),
        (short.clone(), web.clone(), exited),
        (store.clone(), db.clone(), running),
    ]);
    assert_eq!(states, expected);

    for (id, pid) in [(&server, pids[0]), (&store, pids[2])] {
        let (status, now_pid) = container_status(&mut client, id).await?;
        assert_eq!(status.state, running, "{status:?}");
        assert_eq!(now_pid, Some(pid), "{id} is another process now");
        assert!(alive(pid));
    }
    let (status, _) = container_status(&mut client, &short).await?;
    assert_eq!(
        (status.exit_code, status.reason.as_str()),
        (7, "Error"),
        "{status:?}"
    );
    // It finished while berth was down, about 3 s after it started.
    assert!(
        killed_at < status.finished_at && status.finished_at < restarted_at,
        "finished at {} (killed {killed_at}, restarted {restarted_at})",
        status.finished_at
    );
    let ran = Duration::from_nanos((status.finished_at - status.started_at) as u64);
    assert!(
        ran >= Duration::from_millis(2900) && ran < Duration::from_secs(5),
        "{ran:?}"
    );

    // The restarted berth still controls what survived.
    client
        .stop_container(StopContainerRequest {
            container_id: server.clone(),
            timeout: 0,
        })
        .await?;
    let status = wait_exited(&mut client, &server, Duration::from_secs(10)).await?;
    assert_eq!(status.exit_code, 137, "{status:?}");
    remove_all_pods(&mut client).await?;
    assert!(list_containers(&mut client).await?.is_empty());
    assert_eq!(world.host(), before);
    Ok(())
}

/// Pods and containers made at once, to have many calls in flight at the kill.
const IN_FLIGHT: usize = 8;

/// What the calls in flight answered before the kill: the ids of those that succeeded.
struct Answered {
    pods: Vec<String>,
    containers: Vec<String>,
    failed: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_in_the_middle_of_creates_leaves_nothing_half_made() -> Result<()> {
    let world = World::new().await?;
    let mut berth = world.start().await?;
    let mut client = berth.runtime().await?;
    let before = world.host();
    let home_config = world.pod("home", &[]);
    let home = run_pod(&mut client, &home_config).await?;

    let (tx, mut first_pod) = tokio::sync::mpsc::channel::<()>(IN_FLIGHT);
    let mut pod_calls = Vec::new();
    let mut container_calls = Vec::new();
    for i in 0..IN_FLIGHT {
        let ports: &[(u16, u16)] = if i % 2 == 0 {
            &[(8080, free_port())]
        } else {
            &[]
        };
        let config = world.pod(&format!("p{i}"), ports);
        let (mut c, tx) = (client.clone(), tx.clone());
        pod_calls.push(tokio::spawn(async move {
            let answer = run_pod(&mut c, &config).await;
            let _ = tx.send(()).await;
            answer
        }));
        let config = world.container(&format!("c{i}"), &["sleep", "1000"]);
        let (mut c, home, home_config) = (client.clone(), home.clone(), home_config.clone());
        container_calls.push(tokio::spawn(async move {
            create(&mut c, &home, &home_config, &config).await
        }));
    }
    // The first pod made: the others are on their way.
    first_pod.recv().await;
    berth.kill9().await?;
    let mut answered = Answered {
        pods: Vec::new(),
        containers: Vec::new(),
        failed: 0,
    };
    for call in pod_calls {
        match call.await? {
            Ok(id) => answered.pods.push(id),
            Err(_) => answered.failed += 1,
        }
    }
    for call in container_calls {
        match call.await? {
            Ok(id) => answered.containers.push(id),
            Err(_) => answered.failed += 1,
        }
    }
    eprintln!(
        "answered before the kill: {} pods, {} containers; {} calls cut short",
        answered.pods.len(),
        answered.containers.len(),
        answered.failed
    );
    assert!(
        answered.pods.len() < IN_FLIGHT,
        "the kill came after every pod was made"
    );
    drop(client);
    let left = world.host();
    eprintln!(
        "left by the kill: {} pins, {} veths, {} addresses, {} supervisors, {} records",
        left.pins.len(),
        left.veths.len(),
        left.addresses.len(),
        left.supervisors.len(),
        left.records.len()
    );
    // The kill left pods half-made for the restart to deal with.
    assert!(
        left.veths.len() > answered.pods.len() + 1,
        "no pod was half-made at the kill: {left:?}"
    );

    let berth = world.start_as("berth-restarted").await?;
    let mut client = berth.runtime().await?;
    check_whole(&world, &mut client, &home, &answered).await?;
    remove_all_pods(&mut client).await?;
    assert_eq!(world.host(), before);
    Ok(())
}

/// Everything berth shows after the restart is whole, everything answered is shown,
/// and the host holds exactly what the shown pods need.
async fn check_whole(
    world: &World,
    client: &mut Client,
    home: &str,
    answered: &Answered,
) -> Result<()> {
    let pods = list_pods(client).await?;
    let containers = list_containers(client).await?;
    eprintln!(
        "after the restart: {} pods, {} containers",
        pods.len(),
        containers.len()
    );
    let shown: BTreeSet<&str> = pods.iter().map(|p| p.id.as_str()).collect();
    for id in answered.pods.iter().map(String::as_str).chain([home]) {
        assert!(shown.contains(id), "pod {id} was made but is not listed");
    }
    for pod in &pods {
        assert_eq!(pod.state, PodSandboxState::SandboxReady as i32, "{pod:?}");
        let ip = pod_ip(client, &pod.id).await?;
        assert!(ip.starts_with(&world.prefix), "{ip}");
    }
    let shown: BTreeSet<&str> = containers.iter().map(|c| c.id.as_str()).collect();
    for id in &answered.containers {
        assert!(
            shown.contains(id.as_str()),
            "container {id} was made but is not listed"
        );
    }
    for c in &containers {
        assert_eq!(c.pod_sandbox_id, home);
        assert_eq!(c.state, ContainerState::ContainerCreated as i32, "{c:?}");
        // Whole: it starts and runs.
        client
            .start_container(StartContainerRequest {
                container_id: c.id.clone(),
            })
            .await?;
        let (status, pid) = container_status(client, &c.id).await?;
        assert_eq!(status.state, ContainerState::ContainerRunning as i32);
        assert!(pid.is_some_and(alive), "{status:?}");
    }
    // One veth, address, supervisor and three pins (net, uts, ipc) per pod shown; one
    // record per pod and container shown: the rest of the cut-short calls is gone.
    let host = world.host();
    assert_eq!(host.veths.len(), pods.len(), "{host:?}");
    assert_eq!(host.addresses.len(), pods.len(), "{host:?}");
    assert_eq!(host.supervisors.len(), pods.len(), "{host:?}");
    assert_eq!(host.pins.len(), 3 * pods.len(), "{host:?}");
    assert_eq!(
        host.records.len(),
        pods.len() + containers.len(),
        "{host:?}"
    );
    Ok(())
}
