//! The containerd backend, black-box: a real containerd 2.4 (started by
//! `hack/containerd` with its CRI plugins off) serves the `containerd` runtime handler
//! next to youki on one berth. Pods on either backend list, log, exec, stop and are
//! removed the same way, and containerd is left with nothing of berth's afterwards.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use berth_proto::cri::v1::*;
use berth_testkit::containerd::Containerd;
use berth_testkit::host::processes_mentioning;

use crate::world::{
    container_status, create_and_start, exec, list_containers, pod_ip, remove_all_pods, run_on,
    wait_exited, Client, HostState, World,
};
use crate::Berth;

/// The ids `ctr <what> ls -q` lists in berth's namespace of `containerd` (`snapshots
/// ls` has no `-q`: its table's header is left out).
pub(crate) fn in_containerd(containerd: &Containerd, what: &str) -> Vec<String> {
    let table = what == "snapshots";
    let mut args = vec!["--namespace", "berth", what, "ls"];
    if !table {
        args.push("-q");
    }
    containerd
        .ctr(&args)
        .lines()
        .skip(usize::from(table))
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// Removes every pod, checks that `containerd` is left with no container or task of
/// berth's and, `berth` stopped, that the host is as it was `before`.
pub(crate) async fn remove_all_and_compare(
    client: &mut Client,
    containerd: &Containerd,
    berth: Berth,
    world: &World,
    before: &HostState,
) -> Result<()> {
    remove_all_pods(client).await?;
    for what in ["containers", "tasks"] {
        let left = in_containerd(containerd, what);
        ensure!(left.is_empty(), "containerd still holds {what}: {left:?}");
    }
    drop(berth);
    let after = world.host();
    ensure!(
        after == *before,
        "host changed:\nbefore {before:#?}\nafter {after:#?}"
    );
    Ok(())
}

/// The config lines serving `handler` containerd at `socket`.
pub(crate) fn backend_config(socket: &Path) -> String {
    format!(
        "backends:\n  containerd:\n    handler: containerd\n    address: {}\n",
        socket.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn youki_and_containerd_pods_run_side_by_side() -> Result<()> {
    let containerd = Containerd::start();
    let world = World::with_config(&backend_config(containerd.socket())).await?;
    let before = world.host();
    let berth = world.start().await?;
    let mut client = berth.runtime().await?;

    let mut ids = Vec::new();
    for (name, handler) in [("on-youki", ""), ("on-containerd", "containerd")] {
        let pod_config = world.pod(name, &[]);
        let pod = run_on(&mut client, &pod_config, handler).await?;
        // PID 1 ignores untrapped signals: the trap shows the image's stop signal
        // (SIGQUIT) arrived.
        let script = format!(
            "trap 'exit 7' QUIT; echo hello from {name}; echo oops >&2; \
             while :; do sleep 1; done"
        );
        let config = world.container("main", &["sh", "-c", &script]);
        let id = create_and_start(&mut client, &pod, &pod_config, &config).await?;
        ids.push((name, pod, id, pod_config));
    }

    // ListContainers shows both; each runs with a pid and its pod has an address.
    let listed: Vec<String> = list_containers(&mut client)
        .await?
        .into_iter()
        .map(|c| c.id)
        .collect();
    for (name, pod, id, _) in &ids {
        ensure!(listed.contains(id), "{name}: {id} not listed in {listed:?}");
        let (status, pid) = container_status(&mut client, id).await?;
        ensure!(
            status.state == ContainerState::ContainerRunning as i32,
            "{name}: {status:?}"
        );
        ensure!(pid.unwrap_or(0) > 0, "{name}: no pid in verbose info");
        pod_ip(&mut client, pod).await?;
    }
    // Only the containerd pod's container is containerd's (in berth's namespace).
    let held = in_containerd(&containerd, "containers");
    ensure!(held.len() == 1, "containerd holds {held:?}");

    // Logs in the CRI format, exec with exit codes, on both.
    for (name, _, id, _) in &ids {
        let log = world.log_dir(name).join("main.log");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains(&format!(" stdout F hello from {name}\n"))
                && text.contains(" stderr F oops\n")
            {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "{name}: log {} holds {text:?}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let out = exec(
            &mut client,
            id,
            &["sh", "-c", "hostname; echo e >&2; exit 3"],
        )
        .await?;
        ensure!(out.exit_code == 3, "{name}: exec exit {}", out.exit_code);
        ensure!(
            String::from_utf8_lossy(&out.stdout).trim() == *name,
            "{name}: exec stdout {:?}",
            String::from_utf8_lossy(&out.stdout)
        );
        ensure!(out.stderr == b"e\n", "{name}: exec stderr {:?}", out.stderr);
    }

    // StopContainer delivers the image's stop signal (the trap's exit code).
    let mut exits = Vec::new();
    for (name, _, id, _) in &ids {
        client
            .stop_container(StopContainerRequest {
                container_id: id.clone(),
                timeout: 10,
            })
            .await?;
        let status = wait_exited(&mut client, id, Duration::from_secs(5)).await?;
        exits.push((name, status.exit_code, status.reason));
    }
    ensure!(
        exits.iter().all(|(_, code, _)| *code == 7),
        "exits {exits:?}"
    );

    remove_all_and_compare(&mut client, &containerd, berth, &world, &before).await
}

/// The runc shims of `containerd` running now.
fn shims_of(containerd: &Containerd) -> Vec<String> {
    let socket = containerd.socket().display().to_string();
    processes_mentioning(&format!("-address {socket}"))
        .into_iter()
        .filter(|p| p.contains("containerd-shim-runc-v2"))
        .collect()
}

/// One runc shim serves all containers of a pod, as with containerd's own CRI: a shim
/// a container made a burst of a thousand containers start a thousand shims.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pods_containers_share_one_shim() -> Result<()> {
    let containerd = Containerd::start();
    let world = World::with_config(&backend_config(containerd.socket())).await?;
    let before = world.host();
    let berth = world.start().await?;
    let mut client = berth.runtime().await?;
    ensure!(
        shims_of(&containerd).is_empty(),
        "{:?}",
        shims_of(&containerd)
    );

    for pod_name in ["grouped-a", "grouped-b"] {
        let pod_config = world.pod(pod_name, &[]);
        let pod = run_on(&mut client, &pod_config, "containerd").await?;
        for name in ["one", "two", "three"] {
            let config = world.container(name, &["sleep", "1000"]);
            create_and_start(&mut client, &pod, &pod_config, &config).await?;
        }
    }
    ensure!(in_containerd(&containerd, "tasks").len() == 6);
    let shims = shims_of(&containerd);
    ensure!(shims.len() == 2, "one shim a pod, not {shims:#?}");

    remove_all_and_compare(&mut client, &containerd, berth, &world, &before).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !shims_of(&containerd).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(
        shims_of(&containerd).is_empty(),
        "{:?}",
        shims_of(&containerd)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_containerd_leaves_youki_serving_and_names_its_address() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("nobody-here.sock");
    let world = World::with_config(&backend_config(&socket)).await?;
    let berth = world.start().await?;
    let mut client = berth.runtime().await?;

    let status = client
        .status(StatusRequest { verbose: false })
        .await?
        .into_inner();
    let conditions = status.status.context("no status")?.conditions;
    let runtime = conditions
        .iter()
        .find(|c| c.r#type == "RuntimeReady")
        .context("no RuntimeReady")?;
    ensure!(
        runtime.status,
        "youki should keep the runtime ready: {conditions:?}"
    );
    let handler = conditions
        .iter()
        .find(|c| c.r#type == "RuntimeHandlerReady/containerd")
        .context("no condition for the containerd handler")?;
    ensure!(!handler.status, "{handler:?}");
    ensure!(
        handler.message.contains(&socket.display().to_string()),
        "{handler:?}"
    );
    let handlers: Vec<String> = status
        .runtime_handlers
        .iter()
        .map(|h| h.name.clone())
        .collect();
    ensure!(handlers.contains(&"containerd".to_string()), "{handlers:?}");

    let status = run_on(&mut client, &world.pod("refused", &[]), "containerd")
        .await
        .expect_err("a pod on an unreachable containerd");
    ensure!(status.code() == tonic::Code::Unavailable, "{status:?}");
    ensure!(
        status.message().contains(&socket.display().to_string()),
        "{status:?}"
    );
    ensure!(
        crate::world::list_pods(&mut client).await?.is_empty(),
        "a refused pod was kept"
    );

    let pod_config = world.pod("still-youki", &[]);
    let pod = run_on(&mut client, &pod_config, "").await?;
    let config = world.container("main", &["sleep", "600"]);
    let id = create_and_start(&mut client, &pod, &pod_config, &config).await?;
    let (status, _) = container_status(&mut client, &id).await?;
    ensure!(
        status.state == ContainerState::ContainerRunning as i32,
        "{status:?}"
    );
    remove_all_pods(&mut client).await?;
    Ok(())
}

/// The text of `log` once it holds `needle` (within `limit`).
async fn wait_for_log(log: &Path, needle: &str, limit: Duration) -> Result<String> {
    let deadline = Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return Ok(text);
        }
        ensure!(
            Instant::now() < deadline,
            "log {} lacks {needle:?}: {text:?}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_pods_survive_kill_9_of_berth_and_of_containerd() -> Result<()> {
    let mut containerd = Containerd::start();
    let world = World::with_config(&backend_config(containerd.socket())).await?;
    let before = world.host();
    let mut berth = world.start().await?;
    let mut client = berth.runtime().await?;

    let pod_config = world.pod("survivor", &[]);
    let pod = run_on(&mut client, &pod_config, "containerd").await?;
    let counter = "i=0; while :; do echo line $i; i=$((i+1)); sleep 0.2; done";
    let config = world.container("counter", &["sh", "-c", counter]);
    let id = create_and_start(&mut client, &pod, &pod_config, &config).await?;
    let short = world.container("short", &["sh", "-c", "sleep 2; exit 9"]);
    let short = create_and_start(&mut client, &pod, &pod_config, &short).await?;
    let (_, pid) = container_status(&mut client, &id).await?;
    let pid = pid.context("no pid")?;
    let ip = pod_ip(&mut client, &pod).await?;
    let log = world.log_dir("survivor").join("counter.log");
    wait_for_log(&log, " stdout F line 3\n", Duration::from_secs(10)).await?;
    drop(client);

    // berth down: the container runs on under its shim, its log keeps growing (the
    // log shim belongs to the shim, not to berth), the short one exits meanwhile.
    berth.kill9().await?;
    let lines_then = std::fs::read_to_string(&log)?.lines().count();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let lines_now = std::fs::read_to_string(&log)?.lines().count();
    ensure!(lines_now > lines_then, "no log while berth was down");
    let berth = world.start_as("berth-restarted").await?;
    let mut client = berth.runtime().await?;
    let (status, now_pid) = container_status(&mut client, &id).await?;
    ensure!(
        status.state == ContainerState::ContainerRunning as i32,
        "{status:?}"
    );
    ensure!(
        now_pid == Some(pid),
        "another process now: {now_pid:?} (was {pid})"
    );
    ensure!(
        pod_ip(&mut client, &pod).await? == ip,
        "the pod's address changed"
    );
    let (status, _) = container_status(&mut client, &short).await?;
    ensure!(
        status.state == ContainerState::ContainerExited as i32 && status.exit_code == 9,
        "the short container: {status:?}"
    );

    // containerd down: berth stays up, says why the handler is not ready, and the
    // container is Unknown rather than an error; back, it is running as before.
    containerd.kill9();
    let status = client
        .status(StatusRequest { verbose: false })
        .await?
        .into_inner();
    let conditions = status.status.context("no status")?.conditions;
    let handler = conditions
        .iter()
        .find(|c| c.r#type == "RuntimeHandlerReady/containerd")
        .context("no condition for the containerd handler")?;
    ensure!(!handler.status, "{handler:?}");
    let (status, _) = container_status(&mut client, &id).await?;
    ensure!(
        status.state == ContainerState::ContainerUnknown as i32,
        "{status:?}"
    );
    let refused = client
        .exec_sync(ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec!["true".into()],
            timeout: 5,
        })
        .await
        .expect_err("exec with containerd down");
    ensure!(refused.code() == tonic::Code::Unavailable, "{refused:?}");
    containerd.restart();
    let (status, now_pid) = container_status(&mut client, &id).await?;
    ensure!(
        status.state == ContainerState::ContainerRunning as i32,
        "{status:?}"
    );
    ensure!(
        now_pid == Some(pid),
        "another process now: {now_pid:?} (was {pid})"
    );
    let out = exec(&mut client, &id, &["sh", "-c", "echo back"]).await?;
    ensure!(out.stdout == b"back\n", "{out:?}");
    let lines = std::fs::read_to_string(&log)?.lines().count();
    wait_for_log(
        &log,
        &format!(" stdout F line {}\n", lines + 5),
        Duration::from_secs(10),
    )
    .await?;

    remove_all_and_compare(&mut client, &containerd, berth, &world, &before).await
}

/// Every file named `name` below `dir`.
pub(crate) fn files_named(dir: &Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                todo.push(entry.path());
            } else if entry.file_name() == name {
                found.push(entry.path());
            }
        }
    }
    found
}

const PODS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_containerd_pods_at_once_then_removed_leave_nothing_behind() -> Result<()> {
    let containerd = Containerd::start();
    let world = World::with_config(&backend_config(containerd.socket())).await?;
    let before = world.host();
    let berth = world.start().await?;
    let client = berth.runtime().await?;
    let shims = || shims_of(&containerd);
    ensure!(shims().is_empty(), "shims before the test: {:?}", shims());

    // Every other container keeps stdin open: those are served by a log shim of berth's.
    let made = futures::future::try_join_all((0..PODS).map(|i| {
        let pod_config = world.pod(&format!("ctrd{i}"), &[]);
        let mut app = world.container("app", &["sleep", "1000"]);
        app.stdin = i % 2 == 0;
        let mut client = client.clone();
        async move {
            let pod = run_on(&mut client, &pod_config, "containerd").await?;
            let ctr = create_and_start(&mut client, &pod, &pod_config, &app).await?;
            anyhow::Ok((pod, ctr))
        }
    }))
    .await?;

    let mut client = client.clone();
    for (_, ctr) in &made {
        let (status, pid) = container_status(&mut client, ctr).await?;
        ensure!(
            status.state == ContainerState::ContainerRunning as i32,
            "{status:?}"
        );
        ensure!(pid.unwrap_or(0) > 0, "{ctr}: no pid");
    }
    ensure!(in_containerd(&containerd, "containers").len() == PODS);
    ensure!(in_containerd(&containerd, "tasks").len() == PODS);
    ensure!(!shims().is_empty(), "no shim serves the containers");
    let state_dir = world.dir().display().to_string();
    let log_shims = || {
        processes_mentioning(&state_dir)
            .into_iter()
            .filter(|p| p.contains(" log-shim "))
            .collect::<Vec<_>>()
    };
    // One per container: started by containerd's shim (binary:// logs) or by berth
    // (stdin kept open: FIFOs).
    ensure!(log_shims().len() == PODS, "log shims {:?}", log_shims());
    // What a log shim serves (the attach socket, the FIFOs of stdin and output) is
    // root's alone: a pod's user that reaches the host's state dir gets no stream.
    let sockets = files_named(&world.dir(), "attach.sock");
    ensure!(sockets.len() == PODS, "attach sockets {sockets:?}");
    let fifo_dirs = sockets
        .iter()
        .map(|s| s.with_file_name("io"))
        .filter(|io| io.exists())
        .collect::<Vec<_>>();
    ensure!(fifo_dirs.len() == PODS / 2, "FIFO dirs {fifo_dirs:?}");
    let modes = sockets.iter().map(|s| (s, 0o600));
    for (path, most) in modes.chain(fifo_dirs.iter().map(|d| (d, 0o700))) {
        let meta = std::fs::metadata(path).with_context(|| path.display().to_string())?;
        let mode = meta.permissions().mode() & 0o777;
        ensure!(
            meta.uid() == 0 && mode & !most == 0,
            "{}: uid {} mode {mode:o}",
            path.display(),
            meta.uid()
        );
    }

    // Every other container is removed first: RemoveContainer answers before its
    // teardown ends (it goes on in the background), so the pod's removal right
    // after it must wait for that teardown.
    futures::future::try_join_all(made.iter().enumerate().map(|(i, (pod, ctr))| {
        let mut client = client.clone();
        async move {
            if i % 2 == 1 {
                client
                    .remove_container(RemoveContainerRequest {
                        container_id: ctr.clone(),
                    })
                    .await?;
            }
            crate::world::stop_and_remove_pod(&mut client, pod).await
        }
    }))
    .await?;
    ensure!(list_containers(&mut client).await?.is_empty());
    for what in ["containers", "tasks", "leases", "snapshots"] {
        let left = in_containerd(&containerd, what);
        ensure!(left.is_empty(), "containerd still holds {what}: {left:?}");
    }
    // A shim ends once its last task is deleted; give the last ones a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !shims().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(shims().is_empty(), "shims left: {:?}", shims());
    ensure!(log_shims().is_empty(), "log shims left: {:?}", log_shims());
    drop(berth);
    let after = world.host();
    ensure!(
        after == before,
        "host changed:\nbefore {before:#?}\nafter {after:#?}"
    );
    Ok(())
}

/// A runc without `rro` (in `runc features`) would make a recursive read-only mount
/// read-only at its top only, leaving the mounts below writable: on such a runc the
/// containerd handler does not report the feature, refuses such a mount and keeps
/// nothing. (The runc here has it: critest's recursive read-only specs pass on it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recursive_read_only_mount_is_refused_on_a_runc_without_it() -> Result<()> {
    let containerd = Containerd::start();
    let old_runc = tempfile::tempdir()?;
    let runc = old_runc.path().join("runc");
    std::fs::write(
        &runc,
        "#!/bin/sh\n[ \"$1\" = features ] && exec echo '{\"mountOptions\":[\"ro\",\"rbind\"]}'\n\
         exec runc \"$@\"\n",
    )?;
    std::fs::set_permissions(&runc, std::fs::Permissions::from_mode(0o755))?;
    let config = format!(
        "{}    runc: {}\n",
        backend_config(containerd.socket()),
        runc.display()
    );
    let world = World::with_config(&config).await?;
    let berth = world.start().await?;
    let mut client = berth.runtime().await?;
    let status = client
        .status(StatusRequest { verbose: false })
        .await?
        .into_inner();
    let features = status
        .runtime_handlers
        .iter()
        .find(|h| h.name == "containerd")
        .and_then(|h| h.features)
        .context("no containerd handler in Status")?;
    ensure!(
        !features.recursive_read_only_mounts && features.user_namespaces,
        "{features:?}"
    );

    let pod_config = world.pod("rro", &[]);
    let pod = run_on(&mut client, &pod_config, "containerd").await?;
    let host = world.dir().join("rro-source");
    std::fs::create_dir_all(&host)?;
    let mut config = world.container("main", &["sleep", "100"]);
    config.mounts.push(Mount {
        container_path: "/data".into(),
        host_path: host.display().to_string(),
        readonly: true,
        recursive_read_only: true,
        ..Default::default()
    });
    let refused = client
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(config),
            sandbox_config: Some(pod_config),
        })
        .await
        .expect_err("a recursive read-only mount on a runc without it");
    ensure!(
        refused.code() == tonic::Code::InvalidArgument
            && refused.message().contains("recursive read-only"),
        "{refused:?}"
    );
    ensure!(list_containers(&mut client).await?.is_empty());
    ensure!(in_containerd(&containerd, "containers").is_empty());
    remove_all_pods(&mut client).await?;
    Ok(())
}
