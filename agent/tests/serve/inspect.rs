//! `crictl inspectp` and `crictl inspect` (verbose statuses) of a youki pod and
//! container name the backend, the pod's supervisor (a live process), the cgroup (a
//! cgroup directory holding the container's process) and the network namespace (a
//! pinned namespace on the host).

use std::path::Path;

use anyhow::{Context, Result};
use berth_testkit::crictl::Crictl;

use crate::world::{create_and_start, run_pod, stop_and_remove_pod, World};

/// The verbose info crictl printed for `inspectp`/`inspect` of `id`: berth's
/// `info["info"]` object (crictl nests it under `info`, or merges it there).
async fn inspected(crictl: &Crictl, verb: &str, id: &str) -> Result<serde_json::Value> {
    let run = crictl.run(&[verb, "-o", "json", id], None).await;
    anyhow::ensure!(run.code == Some(0), "crictl {verb}: {}", run.stderr);
    let json: serde_json::Value = serde_json::from_str(&run.stdout)
        .with_context(|| format!("crictl {verb} printed:\n{}", run.stdout))?;
    let info = &json["info"];
    Ok(if info["info"].is_object() {
        info["info"].clone()
    } else {
        info.clone()
    })
}

/// The cgroup `path` exists in one hierarchy (v2's single tree, or v1's pids one).
fn cgroup_exists(path: &str) -> bool {
    let rel = path.trim_start_matches('/');
    [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/pids",
        "/sys/fs/cgroup/memory",
    ]
    .iter()
    .any(|root| Path::new(root).join(rel).is_dir())
}

#[tokio::test]
async fn verbose_inspect_shows_backend_supervisor_cgroup_and_netns() -> Result<()> {
    let world = World::new().await?;
    let berth = world.start().await?;
    let mut client = berth.runtime().await?;
    let pod_config = world.pod("inspected", &[]);
    let pod = run_pod(&mut client, &pod_config).await?;
    let app = create_and_start(
        &mut client,
        &pod,
        &pod_config,
        &world.container("app", &["sleep", "60"]),
    )
    .await?;
    let crictl = Crictl::new(world.home.dir.path(), &world.home.socket());

    let p = inspected(&crictl, "inspectp", &pod).await?;
    let c = inspected(&crictl, "inspect", &app).await?;
    for info in [&p, &c] {
        assert_eq!(info["backend"], "youki", "{info}");
    }
    // One supervisor per pod: the container names its pod's, and it runs.
    let supervisor = p["supervisorPid"].as_u64().context("no supervisorPid")?;
    assert_eq!(c["supervisorPid"].as_u64(), Some(supervisor), "{c}");
    assert!(
        Path::new(&format!("/proc/{supervisor}")).exists(),
        "supervisor {supervisor} is not running"
    );
    // Pod and container share the pod's pinned network namespace.
    let netns = p["netnsPath"].as_str().context("no netnsPath")?;
    assert_eq!(c["netnsPath"].as_str(), Some(netns), "{c}");
    assert!(Path::new(netns).exists(), "netns {netns} does not exist");
    // The container's cgroup is a real one, below its pod's, and holds its process.
    let pod_cgroup = p["cgroupPath"].as_str().context("no pod cgroupPath")?;
    let cgroup = c["cgroupPath"].as_str().context("no cgroupPath")?;
    assert!(
        cgroup.starts_with(pod_cgroup),
        "{cgroup} not under {pod_cgroup}"
    );
    assert!(cgroup_exists(cgroup), "no cgroup directory for {cgroup}");
    let pid = c["pid"].as_u64().context("no pid")?;
    let of_pid = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    assert!(
        of_pid.lines().any(|l| l.ends_with(&format!(":{cgroup}"))),
        "process {pid} is not in {cgroup}:\n{of_pid}"
    );
    stop_and_remove_pod(&mut client, &pod).await?;
    Ok(())
}
