//! One pod of 50 containers (issue 8), in a pod-wide PID namespace (CRI's default, and
//! where a pod used to stop at its ~8th container: libcontainer looked up its init's
//! in-pod pid in the host's /proc while mounting /sys/fs/cgroup). Each is created,
//! started and exec'd in turn, sees only its own cgroups, read-only, and as many mounts
//! as the first; then all are stopped and removed, then the pod: the host is back to
//! where it started.

use std::time::Instant;

use anyhow::{ensure, Context, Result};
use berth_proto::cri::v1::*;

use crate::world::{
    container_status, create_and_start, list_containers, remove_all_pods, run_pod,
    stop_and_remove_container, World,
};

const CONTAINERS: usize = 50;

/// Prints its name, its mount count, and whether it may write to its cgroups.
const PROBE: &str = "echo $NAME; wc -l </proc/self/mountinfo; \
    if mkdir /sys/fs/cgroup/memory/x 2>/dev/null; then echo writable; else echo read-only; fi; \
    grep -c . /sys/fs/cgroup/memory/cgroup.procs";

/// The pid `host_pid` has in its innermost PID namespace.
fn pid_in_namespace(host_pid: i64) -> Result<i64> {
    let status = std::fs::read_to_string(format!("/proc/{host_pid}/status"))?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .context("no NSpid line")?;
    Ok(line
        .split_whitespace()
        .last()
        .context("empty NSpid")?
        .parse()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_containers_in_one_pod_then_removed_leave_the_host_as_it_was() -> Result<()> {
    let world = World::new().await?;
    let berth = world.start().await?;
    let mut client = berth.runtime().await?;
    let before = world.host();
    let started = Instant::now();

    let mut pod_config = world.pod("crowded", &[]);
    let options = pod_config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
        .context("no namespace options")?;
    options.pid = NamespaceMode::Pod as i32;
    let pod = run_pod(&mut client, &pod_config).await?;

    let mut ids = Vec::new();
    let mut mount_counts = Vec::new();
    let mut pids_free_on_the_host = Vec::new();
    for i in 0..CONTAINERS {
        let name = format!("c{i}");
        let mut config = world.container(&name, &["sleep", "3600"]);
        config.envs.push(KeyValue {
            key: "NAME".into(),
            value: name.clone().into_bytes(),
        });
        let id = create_and_start(&mut client, &pod, &pod_config, &config)
            .await
            .with_context(|| format!("container {i} of the pod"))?;
        let (_, pid) = container_status(&mut client, &id).await?;
        let in_pod = pid_in_namespace(pid.context("no pid")?)?;
        if !std::path::Path::new(&format!("/proc/{in_pod}")).exists() {
            pids_free_on_the_host.push(in_pod);
        }
        let answer = client
            .exec_sync(ExecSyncRequest {
                container_id: id.clone(),
                cmd: vec!["sh".into(), "-c".into(), PROBE.into()],
                timeout: 10,
            })
            .await?
            .into_inner();
        let out = String::from_utf8_lossy(&answer.stdout).into_owned();
        let lines: Vec<&str> = out.lines().collect();
        ensure!(
            answer.exit_code == 0 && lines.len() == 4,
            "exec in {name}: {answer:?}"
        );
        ensure!(lines[0] == name, "exec in {name} answered {out:?}");
        ensure!(
            lines[2] == "read-only",
            "{name} can write to its cgroups: {out:?}"
        );
        // Its own memory cgroup: its sleep (the exec'd shell and grep are in it too).
        ensure!(
            lines[3].parse::<usize>()? <= 3,
            "{name} sees another cgroup's processes: {out:?}"
        );
        mount_counts.push(lines[1].to_string());
        ids.push(id);
    }
    ensure!(
        mount_counts.iter().all(|c| *c == mount_counts[0]),
        "the mount count grows from container to container: {mount_counts:?}"
    );
    assert_eq!(list_containers(&mut client).await?.len(), CONTAINERS);
    let during = world.host();
    // Three pins, the pod's /dev/shm, a rootfs per container.
    assert_eq!(during.mounts.len(), 4 + CONTAINERS, "{during:?}");

    for id in &ids {
        stop_and_remove_container(&mut client, id).await?;
    }
    remove_all_pods(&mut client).await?;
    assert!(list_containers(&mut client).await?.is_empty());
    assert_eq!(world.host(), before);
    eprintln!(
        "{CONTAINERS} containers in one pod: {:?}; {} mounts in each; in-pod pids free on the host \
         (where libcontainer used to fail): {pids_free_on_the_host:?}",
        started.elapsed(),
        mount_counts[0]
    );
    Ok(())
}
