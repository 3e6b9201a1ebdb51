//! A pod whose supervisor (`berth shim`) was killed with SIGKILL, as kubelet sees it:
//! the pod is not ready (PodSandboxStatus, ListPodSandbox and its state filter agree),
//! its containers have exited with an unknown status, and kubelet's recovery works —
//! StopPodSandbox and RemovePodSandbox (each retried) leave nothing on the host and no
//! process of the old pod alive, and the pod's next attempt runs. Pods with a shared
//! PID namespace and with one per container (whose container inits live on, reparented,
//! when the supervisor dies) both; and the same with berth down while the supervisor
//! dies.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_proto::cri::v1::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tonic::Code;

use crate::crash::alive;
use crate::world::{
    container_status, create, create_and_start, list_containers, list_pods, pod_status,
    remove_all_pods, run_pod, Client, World,
};

/// A pod of `world` named `name` whose containers share one PID namespace when `shared`.
fn pod_config(world: &World, name: &str, shared: bool, attempt: u32) -> PodSandboxConfig {
    let mut config = world.pod(name, &[]);
    if let Some(m) = config.metadata.as_mut() {
        m.attempt = attempt;
    }
    if shared {
        let options = config
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
            .and_then(|s| s.namespace_options.as_mut());
        if let Some(options) = options {
            options.pid = NamespaceMode::Pod as i32;
        }
    }
    config
}

/// A pod with one running container: its id, its container's id and host pid.
struct Pod {
    config: PodSandboxConfig,
    id: String,
    container: String,
    pid: i64,
}

async fn pod_with_a_container(
    world: &World,
    client: &mut Client,
    name: &str,
    shared: bool,
) -> Result<Pod> {
    let config = pod_config(world, name, shared, 0);
    let id = run_pod(client, &config).await?;
    let app = world.container("app", &["sleep", "3600"]);
    let container = create_and_start(client, &id, &config, &app).await?;
    let (status, pid) = container_status(client, &container).await?;
    assert_eq!(status.state, ContainerState::ContainerRunning as i32);
    Ok(Pod {
        config,
        id,
        container,
        pid: pid.context("no pid in the verbose status")?,
    })
}

/// The pid of the supervisor of `pod`, from `shim.pid` in its run directory (named by
/// the pod's ContainerId, which the verbose status gives).
async fn supervisor_of(world: &World, client: &mut Client, pod: &str) -> Result<i32> {
    let answer = pod_status(client, pod).await?;
    let info: serde_json::Value = serde_json::from_str(&answer.info["info"])?;
    let container_id = info["containerId"].as_str().context("no containerId")?;
    let pid_file = world
        .run_dir()
        .join("youki/pods")
        .join(container_id)
        .join("shim.pid");
    let pid = std::fs::read_to_string(&pid_file)
        .with_context(|| format!("reading {}", pid_file.display()))?;
    Ok(pid.trim().parse()?)
}

/// SIGKILLs the process `pid` and waits until it has ended.
async fn kill9(pid: i32) -> Result<()> {
    kill(Pid::from_raw(pid), Signal::SIGKILL)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid.into()) {
        if Instant::now() > deadline {
            bail!("process {pid} outlived SIGKILL");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The state PodSandboxStatus answers for `pod`.
async fn state_of(client: &mut Client, pod: &str) -> Result<i32> {
    let answer = pod_status(client, pod).await?;
    Ok(answer.status.context("no status")?.state)
}

/// The ids ListPodSandbox answers with the state filter `state`.
async fn listed_in(client: &mut Client, state: PodSandboxState) -> Result<Vec<String>> {
    let filter = PodSandboxFilter {
        state: Some(PodSandboxStateValue {
            state: state as i32,
        }),
        ..Default::default()
    };
    let answer = client
        .list_pod_sandbox(ListPodSandboxRequest {
            filter: Some(filter),
        })
        .await?;
    let mut ids: Vec<String> = answer
        .into_inner()
        .items
        .into_iter()
        .map(|p| p.id)
        .collect();
    ids.sort();
    Ok(ids)
}

/// What kubelet sees of `pods`, whose supervisors are dead: not ready everywhere, the
/// containers exited with an unknown status, and a container cannot be made there.
async fn shown_dead(world: &World, client: &mut Client, pods: &[&Pod]) -> Result<()> {
    let not_ready = PodSandboxState::SandboxNotready as i32;
    for pod in pods {
        // The death is noticed at once, but the kill may still be under way.
        let deadline = Instant::now() + Duration::from_secs(5);
        while state_of(client, &pod.id).await? != not_ready {
            if Instant::now() > deadline {
                bail!("pod {} is still ready", pod.id);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut ids: Vec<String> = pods.iter().map(|p| p.id.clone()).collect();
    ids.sort();
    let dead = |id: &String| ids.contains(id);
    for listed in list_pods(client).await? {
        if dead(&listed.id) {
            assert_eq!(listed.state, not_ready, "{listed:?}");
        }
    }
    let not_ready_ids = listed_in(client, PodSandboxState::SandboxNotready).await?;
    assert_eq!(not_ready_ids, ids);
    let ready_ids = listed_in(client, PodSandboxState::SandboxReady).await?;
    assert!(!ready_ids.iter().any(dead), "{ready_ids:?}");

    let exited = ContainerState::ContainerExited as i32;
    for listed in list_containers(client).await? {
        if dead(&listed.pod_sandbox_id) {
            assert_eq!(listed.state, exited, "{listed:?}");
        }
    }
    for pod in pods {
        let (status, pid) = container_status(client, &pod.container).await?;
        assert_eq!(
            (status.state, status.exit_code, status.reason.as_str(), pid),
            (exited, 255, "Unknown", None),
            "{status:?}"
        );
        assert!(status.message.contains("supervisor"), "{status:?}");
        assert!(status.finished_at > status.started_at, "{status:?}");
        assert!(
            !alive(pod.pid),
            "container {} is reported exited but runs",
            pod.container
        );
        // kubelet would not try; whoever does is told why.
        let more = world.container("more", &["sleep", "3600"]);
        let refused = create(client, &pod.id, &pod.config, &more)
            .await
            .expect_err("a container was made in a pod without a supervisor");
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert!(refused.message().contains("not ready"), "{refused:?}");
    }
    Ok(())
}

/// kubelet's recovery of a pod it saw not ready: its containers stopped, the sandbox
/// stopped and removed (each call retried, as kubelet does), then the next attempt
/// of the pod made and used.
async fn replace(world: &World, client: &mut Client, pods: &[&Pod]) -> Result<Vec<String>> {
    for pod in pods {
        client
            .stop_container(StopContainerRequest {
                container_id: pod.container.clone(),
                timeout: 30,
            })
            .await?;
        for _ in 0..2 {
            client
                .stop_pod_sandbox(StopPodSandboxRequest {
                    pod_sandbox_id: pod.id.clone(),
                })
                .await?;
        }
        assert!(
            !alive(pod.pid),
            "container {} survived StopPodSandbox",
            pod.container
        );
        for _ in 0..2 {
            client
                .remove_pod_sandbox(RemovePodSandboxRequest {
                    pod_sandbox_id: pod.id.clone(),
                })
                .await?;
        }
    }
    let left = list_pods(client).await?;
    assert!(
        !left.iter().any(|p| pods.iter().any(|d| d.id == p.id)),
        "{left:?}"
    );
    let left = list_containers(client).await?;
    assert!(
        !left
            .iter()
            .any(|c| pods.iter().any(|d| d.container == c.id)),
        "{left:?}"
    );

    let mut next = Vec::new();
    for pod in pods {
        let metadata = pod.config.metadata.as_ref().context("metadata")?;
        let shared = pod
            .config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
            .is_some_and(|o| o.pid == NamespaceMode::Pod as i32);
        let config = pod_config(world, &metadata.name, shared, 1);
        let id = run_pod(client, &config).await?;
        assert_eq!(
            state_of(client, &id).await?,
            PodSandboxState::SandboxReady as i32
        );
        let app = world.container("app", &["sleep", "3600"]);
        let container = create_and_start(client, &id, &config, &app).await?;
        let answer = client
            .exec_sync(ExecSyncRequest {
                container_id: container,
                cmd: vec!["echo".into(), "alive".into()],
                timeout: 10,
            })
            .await?
            .into_inner();
        assert_eq!(
            (
                answer.exit_code,
                String::from_utf8_lossy(&answer.stdout).trim()
            ),
            (0, "alive")
        );
        next.push(id);
    }
    Ok(next)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_whose_supervisor_died_is_not_ready_and_replaced() -> Result<()> {
    let world = World::new().await?;
    let berth = world.start().await?;
    let mut client = berth.runtime().await?;
    let before = world.host();

    let shared = pod_with_a_container(&world, &mut client, "shared", true).await?;
    let own = pod_with_a_container(&world, &mut client, "own", false).await?;
    let healthy = pod_with_a_container(&world, &mut client, "healthy", false).await?;
    measure(&mut client, &healthy).await?;
    for pod in [&shared, &own] {
        let supervisor = supervisor_of(&world, &mut client, &pod.id).await?;
        kill9(supervisor).await?;
    }
    // What the supervisors' death did by itself: the shared PID namespace ended with
    // its holder; a container with a PID namespace of its own was reparented and
    // may run on (berth finds it through the pod's cgroups).
    eprintln!(
        "after the supervisors' death: shared-PID container alive: {}, own-PID container alive: {}",
        alive(shared.pid),
        alive(own.pid)
    );

    shown_dead(&world, &mut client, &[&shared, &own]).await?;
    still_healthy(&mut client, &healthy).await?;
    let next = replace(&world, &mut client, &[&shared, &own]).await?;
    for pod in [&shared, &own] {
        assert!(!alive(pod.pid));
    }
    still_healthy(&mut client, &healthy).await?;
    assert_eq!(list_pods(&mut client).await?.len(), next.len() + 1);
    remove_all_pods(&mut client).await?;
    assert_eq!(world.host(), before);
    Ok(())
}

/// Prints what kubelet's frequent calls cost with healthy pods: ListPodSandbox and
/// PodSandboxStatus ask no supervisor (a pidfd is polled), ContainerStatus makes one
/// round trip to it (what every PodSandboxStatus cost when it pinged).
async fn measure(client: &mut Client, pod: &Pod) -> Result<()> {
    const N: u32 = 200;
    let start = Instant::now();
    for _ in 0..N {
        list_pods(client).await?;
    }
    let list = start.elapsed() / N;
    let start = Instant::now();
    for _ in 0..N {
        state_of(client, &pod.id).await?;
    }
    let status = start.elapsed() / N;
    let start = Instant::now();
    for _ in 0..N {
        container_status(client, &pod.container).await?;
    }
    let container = start.elapsed() / N;
    let pods = list_pods(client).await?.len();
    eprintln!(
        "mean over {N} calls with {pods} ready pods: ListPodSandbox {list:?}, PodSandboxStatus {status:?}, ContainerStatus {container:?}"
    );
    Ok(())
}

/// A pod whose supervisor lives is untouched by another's death.
async fn still_healthy(client: &mut Client, pod: &Pod) -> Result<()> {
    assert_eq!(
        state_of(client, &pod.id).await?,
        PodSandboxState::SandboxReady as i32
    );
    let ready = listed_in(client, PodSandboxState::SandboxReady).await?;
    assert!(ready.contains(&pod.id), "{ready:?}");
    let (status, pid) = container_status(client, &pod.container).await?;
    assert_eq!(status.state, ContainerState::ContainerRunning as i32);
    assert_eq!(pid, Some(pod.pid));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_that_died_while_berth_was_down_is_reported_after_the_restart() -> Result<()> {
    let world = World::new().await?;
    let mut berth = world.start().await?;
    let mut client = berth.runtime().await?;
    let before = world.host();

    let shared = pod_with_a_container(&world, &mut client, "shared", true).await?;
    let own = pod_with_a_container(&world, &mut client, "own", false).await?;
    let mut supervisors = Vec::new();
    for pod in [&shared, &own] {
        supervisors.push(supervisor_of(&world, &mut client, &pod.id).await?);
    }
    drop(client);
    berth.kill9().await?;
    for supervisor in supervisors {
        kill9(supervisor).await?;
    }
    drop(berth);

    let berth = world.start_as("berth-restarted").await?;
    let mut client = berth.runtime().await?;
    shown_dead(&world, &mut client, &[&shared, &own]).await?;
    let next = replace(&world, &mut client, &[&shared, &own]).await?;
    assert_eq!(list_pods(&mut client).await?.len(), next.len());
    remove_all_pods(&mut client).await?;
    assert_eq!(world.host(), before);
    Ok(())
}
