//! NRI with a real plugin (berth-testkit's `nri_plugin`, whose framing is its own):
//! one that injects an environment variable and an annotation into every container,
//! which the container's process and its status show; one that rejects every
//! container, which fails `CreateContainer` with FAILED_PRECONDITION and leaves no
//! container behind; one that sets a memory limit, an rlimit and a device, which the
//! container gets on youki and on containerd.

use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use berth_proto::cri::v1::*;
use berth_testkit::nri_plugin::{self, Mode};

use berth_testkit::containerd::Containerd;

use crate::world::{create, create_and_start, exec, run_on, run_pod, stop_and_remove_pod, World};

/// Connects the plugin `idx-name` in a thread and waits until berth synchronized it.
fn plugin(socket: &str, mode: Mode, name: &str, idx: &str) -> Result<mpsc::Receiver<String>> {
    let (tx, rx) = mpsc::channel();
    let (socket, name, idx) = (socket.to_string(), name.to_string(), idx.to_string());
    std::thread::spawn(move || {
        if let Err(err) = nri_plugin::run(&socket, mode, &name, &idx, tx) {
            eprintln!("nri plugin {name}: {err}");
        }
    });
    // Configure comes first, then Synchronize.
    let heard: Vec<String> = (0..2)
        .map(|_| rx.recv_timeout(Duration::from_secs(10)))
        .collect::<Result<_, _>>()
        .context("the plugin was not synchronized within 10 s")?;
    anyhow::ensure!(heard == ["Configure", "synchronized"], "heard {heard:?}");
    Ok(rx)
}

#[tokio::test]
async fn plugins_adjust_and_reject_containers() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("nri.sock");
    let socket = socket.to_str().context("socket path")?.to_string();
    let world = World::with_config(&format!(
        "nri:\n  enable: true\n  socket_path: {socket}\n  plugin_request_timeout_ms: 5000\n"
    ))
    .await?;
    let berth = world.start().await?;
    let mut client = berth.runtime().await?;
    // Root's only.
    let mode = std::fs::metadata(&socket)?.permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );

    let inject = plugin(&socket, Mode::Inject, "injector", "10")?;
    let pod_config = world.pod("nri", &[]);
    let pod = run_pod(&mut client, &pod_config).await?;
    let app = world.container("app", &["sleep", "60"]);
    let id = create_and_start(&mut client, &pod, &pod_config, &app).await?;
    let out = exec(&mut client, &id, &["sh", "-c", "echo $NRI_INJECTED"]).await?;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "injector");
    let status = client
        .container_status(ContainerStatusRequest {
            container_id: id.clone(),
            verbose: true,
        })
        .await?
        .into_inner()
        .status
        .context("no status")?;
    assert_eq!(
        status
            .annotations
            .get("nri.berth.test/injected")
            .map(String::as_str),
        Some("injector"),
        "{:?}",
        status.annotations
    );
    // The plugin heard of the pod and the container, in order.
    let heard: Vec<String> = inject.try_iter().collect();
    let want = [
        "RunPodSandbox",
        "CreateContainer app",
        "PostCreateContainer",
        "StartContainer",
        "PostStartContainer",
    ];
    let mut at = 0;
    for line in &heard {
        if at < want.len() && line == want[at] {
            at += 1;
        }
    }
    assert_eq!(at, want.len(), "heard {heard:?}");

    // A second plugin rejects every container: nothing is created.
    let reject = plugin(&socket, Mode::Reject, "rejector", "20")?;
    let refused = world.container("refused", &["sleep", "60"]);
    let err = match create(&mut client, &pod, &pod_config, &refused).await {
        Ok(id) => bail!("created {id} although a plugin rejects it"),
        Err(err) => err,
    };
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("rejector"), "{err:?}");
    assert!(
        err.message().contains("rejects container refused"),
        "{err:?}"
    );
    let listed = client
        .list_containers(ListContainersRequest { filter: None })
        .await?
        .into_inner()
        .containers;
    assert!(
        listed
            .iter()
            .all(|c| c.metadata.as_ref().unwrap().name != "refused"),
        "{listed:?}"
    );
    let records = world.host().records;
    assert!(
        !records.iter().any(|r| r.contains("refused")),
        "{records:?}"
    );
    drop(reject);
    // Without a listener the plugin thread still answers; it ends with berth.

    stop_and_remove_pod(&mut client, &pod).await?;
    Ok(())
}

/// A plugin's resource, rlimit and device adjustments reach the container on both
/// backends (youki and a real containerd): its cgroup's memory limit, its open-files
/// limit and its `/dev/fuse` are the plugin's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_limits_and_devices_reach_the_container() -> Result<()> {
    let containerd = Containerd::start();
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("nri.sock");
    let socket = socket.to_str().context("socket path")?.to_string();
    let world = World::with_config(&format!(
        "nri:\n  enable: true\n  socket_path: {socket}\n  plugin_request_timeout_ms: 5000\n\
         backends:\n  containerd:\n    handler: containerd\n    address: {}\n",
        containerd.socket().display()
    ))
    .await?;
    let berth = world.start().await?;
    let mut client = berth.runtime().await?;
    let _limit = plugin(&socket, Mode::Limit, "limiter", "10")?;
    for handler in ["", "containerd"] {
        let pod_config = world.pod(&format!("nri-limit{handler}"), &[]);
        let pod = run_on(&mut client, &pod_config, handler).await?;
        let app = world.container("limited", &["sleep", "60"]);
        let id = create_and_start(&mut client, &pod, &pod_config, &app).await?;
        let cgroups = limits_of(&mut client, &id)
            .await
            .with_context(|| format!("handler {handler:?}"))?;
        let memory_limit = || cgroup_value(&cgroups, "memory", "memory.limit_in_bytes");
        assert_eq!(
            memory_limit()?,
            nri_plugin::LIMIT_MEMORY.to_string(),
            "handler {handler:?}"
        );
        // An update: the plugin keeps its memory limit, the rest is applied as asked.
        client
            .update_container_resources(UpdateContainerResourcesRequest {
                container_id: id.clone(),
                linux: Some(LinuxContainerResources {
                    memory_limit_in_bytes: 96 << 20,
                    cpu_shares: 512,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await?;
        assert_eq!(
            memory_limit()?,
            nri_plugin::LIMIT_MEMORY.to_string(),
            "handler {handler:?}"
        );
        assert_eq!(
            cgroup_value(&cgroups, "cpu", "cpu.shares")?,
            "512",
            "handler {handler:?}"
        );
        stop_and_remove_pod(&mut client, &pod).await?;
    }
    Ok(())
}

/// Checks the container `id`'s open-files limit and `/dev/fuse`; returns its
/// `/proc/self/cgroup` lines (no cgroup namespace on cgroup v1: they name the
/// host's paths).
async fn limits_of(client: &mut crate::world::Client, id: &str) -> Result<Vec<String>> {
    let out = exec(
        client,
        id,
        &[
            "sh",
            "-c",
            "ulimit -n; test -c /dev/fuse && echo fuse; cat /proc/self/cgroup",
        ],
    )
    .await?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = stdout.lines();
    let nofile = nri_plugin::LIMIT_NOFILE.to_string();
    anyhow::ensure!(lines.next() == Some(nofile.as_str()), "{stdout}");
    anyhow::ensure!(lines.next() == Some("fuse"), "{stdout}");
    Ok(lines.map(String::from).collect())
}

/// The value of the cgroup v1 file `file` of `controller` (the test hosts have v1)
/// for the process whose `/proc/self/cgroup` is `cgroups`, as the host reads it.
fn cgroup_value(cgroups: &[String], controller: &str, file: &str) -> Result<String> {
    let path = cgroups
        .iter()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == controller)
                .then(|| format!("/sys/fs/cgroup/{controller}{path}/{file}"))
        })
        .with_context(|| format!("no {controller} cgroup in {cgroups:?}"))?;
    let value = std::fs::read_to_string(&path).with_context(|| path.clone())?;
    Ok(value.trim().to_string())
}

/// The env var that makes [`launched_plugin_helper`] act as a plugin.
const HELPER: &str = "BERTH_TEST_LAUNCHED_NRI_PLUGIN";

/// Not a test of its own: the launched plugin of [`berth_launches_preinstalled_plugins`]
/// (berth runs this test binary filtered to this function). Outside it, it returns.
#[test]
fn launched_plugin_helper() -> Result<()> {
    if std::env::var(HELPER).is_err() {
        return Ok(());
    }
    use std::os::fd::FromRawFd;
    let fd: i32 = std::env::var("NRI_PLUGIN_SOCKET")?.parse()?;
    // SAFETY: berth passed this fd open, for the plugin alone.
    let conn = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) };
    let (name, idx) = (
        std::env::var("NRI_PLUGIN_NAME")?,
        std::env::var("NRI_PLUGIN_IDX")?,
    );
    let (tx, _rx) = mpsc::channel();
    nri_plugin::run_on(conn, Mode::Inject, &name, &idx, tx)?;
    Ok(())
}

/// Whether process `pid` exists (a zombie counts: nobody reaped it).
fn alive(pid: &str) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Pre-installed plugins: berth launches `10-inject` from its plugin dir with its
/// config (the value it injects) before serving, and the container shows it; it kills
/// and reaps `20-silent`, which never registers; a file not root's alone is not run;
/// when berth stops, the launched plugin is killed (its script would otherwise
/// outlive it in a `sleep`).
#[tokio::test]
async fn berth_launches_preinstalled_plugins() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    let (plugins, conf) = (dir.path().join("plugins"), dir.path().join("conf.d"));
    std::fs::create_dir(&plugins)?;
    std::fs::create_dir(&conf)?;
    let script = |name: &str, body: &str, mode: u32| -> Result<()> {
        let path = plugins.join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho $$ > {}/{name}.pid\n{body}\n",
                dir.path().display()
            ),
        )?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    let test_binary = std::env::current_exe()?;
    script(
        "10-inject",
        &format!(
            "{HELPER}=1 {} --exact nri::launched_plugin_helper --test-threads=1 -q\nexec /bin/sleep 120",
            test_binary.display()
        ),
        0o755,
    )?;
    script("20-silent", "exec /bin/sleep 120", 0o755)?;
    script("30-writable", "exec /bin/sleep 120", 0o777)?;
    std::fs::write(conf.join("inject.conf"), "from-config\n")?;
    let socket = dir.path().join("nri.sock");
    let world = World::with_config(&format!(
        "nri:\n  enable: true\n  socket_path: {}\n  plugin_path: {}\n  plugin_config_path: {}\n  \
         plugin_registration_timeout_ms: 2000\n  plugin_request_timeout_ms: 5000\n",
        socket.display(),
        plugins.display(),
        conf.display()
    ))
    .await?;
    let mut berth = world.start().await?;
    let pid = |name: &str| std::fs::read_to_string(dir.path().join(format!("{name}.pid")));
    // Serving means the launches are settled: the silent one killed and reaped.
    let silent = pid("20-silent").context("20-silent was not launched")?;
    assert!(!alive(silent.trim()), "20-silent ({silent}) left behind");
    assert!(
        pid("30-writable").is_err(),
        "a group/other-writable plugin ran"
    );

    let mut client = berth.runtime().await?;
    let pod_config = world.pod("nri-launched", &[]);
    let pod = run_pod(&mut client, &pod_config).await?;
    let app = world.container("app", &["sleep", "60"]);
    let id = create_and_start(&mut client, &pod, &pod_config, &app).await?;
    let out = exec(&mut client, &id, &["sh", "-c", "echo $NRI_INJECTED"]).await?;
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "from-config");
    stop_and_remove_pod(&mut client, &pod).await?;
    drop(client);

    let inject = pid("10-inject")?;
    assert!(alive(inject.trim()), "10-inject ({inject}) not running");
    berth.signal(nix::sys::signal::Signal::SIGTERM)?;
    berth.wait(Duration::from_secs(30)).await?;
    assert!(!alive(inject.trim()), "10-inject ({inject}) outlived berth");
    Ok(())
}
