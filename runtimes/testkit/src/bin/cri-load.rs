//! `cri-load`: the load half of `bench/run`, the same client for every runtime. It
//! talks CRI over the runtime's socket as kubelet would (one HTTP/2 connection, calls
//! concurrent on it) and writes what it measured as a JSON array of figures
//! (`{"figure", "unit", "values"}`; `bench/report` takes p50 and p90 of `values`).
//!
//! ```text
//! cri-load load   --endpoint E --pods N --containers M [--calls C] --image I --logs DIR --out F
//! cri-load memory --endpoint E --pods N --containers M --image I --logs DIR --marker S
//!                 --daemon-pid P [--idle SECONDS] --out F
//! cri-load pull   --endpoint E --image I --times T --label L --daemon-pid P --out F
//! ```
//!
//! Every mode takes `--handler H`: the runtime handler of its pods.
//!
//! `load`: N pods of M `sleep` containers made ready at once (per pod RunPodSandbox,
//! then its containers created and started concurrently; the wall time), C calls each
//! of ListContainers (all; by pod id; by state; by label), ListPodSandbox,
//! ListContainerStats, ListPodSandboxStats and ExecSync, then every pod stopped and
//! removed at once (wall time).
//!
//! `memory`: N pods of M containers made ready, then the PSS (`/proc/<pid>/smaps_rollup`)
//! of the runtime's processes: every process whose command line contains the marker S
//! (the runtime's own directory: the daemon, berth's pod supervisors, containerd's
//! shims), the daemon P, and their descendants except the containers' workloads (the
//! `sleep` processes, the same on both sides; containerd's `pause` processes count).
//! With `--idle`, the CPU time (utime + stime of `/proc/<pid>/stat`, in clock ticks)
//! the same processes use over that many seconds with no call made. Then the pods
//! are removed.
//!
//! `list --calls C`: C calls of ListContainers (all) against what runs already
//! (profiling).
//!
//! `pull`: T times PullImage of I (removed before each), its wall time and the peak
//! RSS of the daemon P during it (VmHWM after resetting it: `clear_refs` 5).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use berth_proto::cri::v1::image_service_client::ImageServiceClient;
use berth_proto::cri::v1::runtime_service_client::RuntimeServiceClient;
use berth_proto::cri::v1::{
    ContainerConfig, ContainerFilter, ContainerMetadata, ContainerState, ContainerStateValue,
    CreateContainerRequest, ExecSyncRequest, ImageSpec, LinuxContainerConfig,
    LinuxPodSandboxConfig, ListContainerStatsRequest, ListContainersRequest, ListPodSandboxRequest,
    ListPodSandboxStatsRequest, PodSandboxConfig, PodSandboxMetadata, PullImageRequest,
    RemoveImageRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest,
    StopPodSandboxRequest, VersionRequest,
};
use serde_json::{json, Value};
use tonic::transport::{Channel, Endpoint};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The label every container carries with its pod's name (kubelet's pod name label),
/// for the label filter.
const POD_LABEL: &str = "io.kubernetes.pod.name";

/// The cgroup below which every pod's cgroup is (`/berth-bench/<pod name>`).
const CGROUP_PARENT: &str = "berth-bench";

struct Args(HashMap<String, String>);

impl Args {
    fn parse(args: impl Iterator<Item = String>) -> Result<Self> {
        let mut map = HashMap::new();
        let mut args = args.peekable();
        while let Some(flag) = args.next() {
            let name = flag
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {flag}"))?;
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            map.insert(name.to_string(), value);
        }
        Ok(Self(map))
    }

    fn get(&self, name: &str) -> Result<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| format!("--{name} is required").into())
    }

    fn number(&self, name: &str, default: Option<u64>) -> Result<u64> {
        match (self.0.get(name), default) {
            (Some(v), _) => Ok(v.parse().map_err(|_| format!("--{name}: {v}"))?),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(format!("--{name} is required").into()),
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut argv = std::env::args().skip(1);
    let mode = argv.next().unwrap_or_default();
    let run = async {
        let args = Args::parse(argv)?;
        let figures = match mode.as_str() {
            "load" => load(&args).await?,
            "memory" => memory(&args).await?,
            "pull" => pull(&args).await?,
            "list" => list(&args).await?,
            _ => return Err("usage: cri-load load|memory|pull --endpoint E ...".into()),
        };
        std::fs::write(
            args.get("out")?,
            serde_json::to_string_pretty(&Value::Array(figures))?,
        )?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    };
    if let Err(e) = run.await {
        eprintln!("cri-load {mode}: {e}");
        std::process::exit(1);
    }
}

fn figure(name: String, unit: &str, values: Vec<f64>) -> Value {
    json!({"figure": name, "unit": unit, "values": values})
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

async fn connect(endpoint: &str) -> Result<Channel> {
    Ok(Endpoint::from_shared(endpoint.to_string())?
        .timeout(Duration::from_secs(600))
        .connect()
        .await?)
}

/// The pods and containers of one workload, on one runtime.
struct Workload {
    client: RuntimeServiceClient<Channel>,
    image: String,
    /// The runtime handler of every pod (empty: the default).
    handler: String,
    logs: String,
    /// A name part no earlier workload of the run used.
    tag: String,
    pods: Vec<String>,
    /// The pods' names (their cgroups' names).
    names: Vec<String>,
    containers: Vec<String>,
}

impl Workload {
    fn new(channel: &Channel, args: &Args, tag: &str) -> Result<Self> {
        Ok(Self {
            client: RuntimeServiceClient::new(channel.clone()),
            image: args.get("image")?.to_string(),
            handler: args.0.get("handler").cloned().unwrap_or_default(),
            logs: args.get("logs")?.to_string(),
            tag: tag.to_string(),
            pods: Vec::new(),
            names: Vec::new(),
            containers: Vec::new(),
        })
    }

    /// `pods` pods of `per_pod` sleeping containers, made ready at once; the wall time.
    async fn make(&mut self, pods: usize, per_pod: usize) -> Result<Duration> {
        let start = Instant::now();
        let made = (0..pods).map(|p| {
            let mut client = self.client.clone();
            let name = format!("{}-{p}", self.tag);
            let image = self.image.clone();
            let handler = self.handler.clone();
            let logs = format!("{}/{name}", self.logs);
            tokio::spawn(async move {
                std::fs::create_dir_all(&logs)
                    .map_err(|e| tonic::Status::internal(e.to_string()))?;
                let config = pod_config(&name, &logs);
                let pod = client
                    .run_pod_sandbox(RunPodSandboxRequest {
                        config: Some(config.clone()),
                        runtime_handler: handler,
                    })
                    .await?
                    .into_inner()
                    .pod_sandbox_id;
                let containers = (0..per_pod).map(|c| {
                    let mut client = client.clone();
                    let request = CreateContainerRequest {
                        pod_sandbox_id: pod.clone(),
                        config: Some(container_config(&name, c, &image)),
                        sandbox_config: Some(config.clone()),
                    };
                    async move {
                        let id = client
                            .create_container(request)
                            .await?
                            .into_inner()
                            .container_id;
                        client
                            .start_container(StartContainerRequest {
                                container_id: id.clone(),
                            })
                            .await?;
                        Ok::<_, tonic::Status>(id)
                    }
                });
                let ids = futures_join(containers).await?;
                Ok::<_, tonic::Status>((pod, ids))
            })
        });
        let made: Vec<_> = made.collect();
        self.names
            .extend((0..pods).map(|p| format!("{}-{p}", self.tag)));
        for handle in made {
            let (pod, ids) = handle.await??;
            self.pods.push(pod);
            self.containers.extend(ids);
        }
        Ok(start.elapsed())
    }

    /// Every pod stopped and removed at once; the wall time.
    async fn remove(&mut self) -> Result<Duration> {
        let start = Instant::now();
        let handles: Vec<_> = self
            .pods
            .drain(..)
            .map(|pod| {
                let mut client = self.client.clone();
                tokio::spawn(async move {
                    client
                        .stop_pod_sandbox(StopPodSandboxRequest {
                            pod_sandbox_id: pod.clone(),
                        })
                        .await?;
                    client
                        .remove_pod_sandbox(RemovePodSandboxRequest {
                            pod_sandbox_id: pod,
                        })
                        .await?;
                    Ok::<_, tonic::Status>(())
                })
            })
            .collect();
        for handle in handles {
            handle.await??;
        }
        self.containers.clear();
        let took = start.elapsed();
        remove_pod_cgroups(&std::mem::take(&mut self.names));
        Ok(took)
    }
}

/// Awaits every future, in order; the first error.
async fn futures_join<T, F>(
    futures: impl Iterator<Item = F>,
) -> std::result::Result<Vec<T>, tonic::Status>
where
    F: std::future::Future<Output = std::result::Result<T, tonic::Status>> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(
            handle
                .await
                .map_err(|e| tonic::Status::internal(e.to_string()))??,
        );
    }
    Ok(out)
}

fn pod_config(name: &str, logs: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.to_string(),
            uid: format!("{name}-uid"),
            namespace: "bench".to_string(),
            attempt: 0,
        }),
        hostname: name.to_string(),
        log_directory: logs.to_string(),
        labels: HashMap::from([(POD_LABEL.to_string(), name.to_string())]),
        linux: Some(LinuxPodSandboxConfig {
            // As kubelet gives one (containerd's pod stats need it).
            cgroup_parent: format!("/{CGROUP_PARENT}/{name}"),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Removes the pod cgroups kubelet would remove (the runtimes leave the parent they
/// were given); best effort, empty ones only.
fn remove_pod_cgroups(names: &[String]) {
    let roots = std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten();
    for root in roots {
        let parent = root.path().join(CGROUP_PARENT);
        for name in names {
            let _ = std::fs::remove_dir(parent.join(name));
        }
        let _ = std::fs::remove_dir(&parent);
    }
}

fn container_config(pod: &str, c: usize, image: &str) -> ContainerConfig {
    let name = format!("c{c}");
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.clone(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.to_string(),
            ..Default::default()
        }),
        command: vec!["sleep".to_string(), "36000".to_string()],
        log_path: format!("{name}.log"),
        labels: HashMap::from([
            (POD_LABEL.to_string(), pod.to_string()),
            ("io.kubernetes.container.name".to_string(), name),
        ]),
        linux: Some(LinuxContainerConfig::default()),
        ..Default::default()
    }
}

/// Pulls `image` unless it is there.
async fn ensure_image(channel: &Channel, image: &str) -> Result<()> {
    ImageServiceClient::new(channel.clone())
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?;
    Ok(())
}

/// `calls` timed calls of `call`, in ms.
async fn timed<F, Fut>(calls: u64, mut call: F) -> Result<Vec<f64>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<(), tonic::Status>>,
{
    let mut out = Vec::new();
    for _ in 0..calls {
        let start = Instant::now();
        call().await?;
        out.push(ms(start.elapsed()));
    }
    Ok(out)
}

async fn load(args: &Args) -> Result<Vec<Value>> {
    let pods = args.number("pods", None)? as usize;
    let per_pod = args.number("containers", None)? as usize;
    let calls = args.number("calls", Some(50))?;
    let channel = connect(args.get("endpoint")?).await?;
    ensure_image(&channel, args.get("image")?).await?;
    // A first pod outside the timing: what a runtime does once (the pause image,
    // the network config) is not part of the figures.
    let mut warm = Workload::new(&channel, args, &format!("warm{pods}"))?;
    warm.make(1, 1).await?;
    warm.remove().await?;

    let size = format!("{pods} pods × {per_pod} = {} containers", pods * per_pod);
    let mut w = Workload::new(&channel, args, &format!("load{pods}"))?;
    let ready = w.make(pods, per_pod).await?;
    let mut figures = vec![figure(
        format!("{size}: all ready at once (wall)"),
        "ms",
        vec![ms(ready)],
    )];
    let mut c = w.client.clone();
    let one_pod = w.pods[pods / 2].clone();
    let one_name = format!("{}-{}", w.tag, pods / 2);
    let expect = c
        .list_containers(ListContainersRequest::default())
        .await?
        .into_inner()
        .containers
        .len();
    if expect != pods * per_pod {
        return Err(format!("ListContainers listed {expect}, not {}", pods * per_pod).into());
    }
    let filters = [
        ("all", ContainerFilter::default()),
        (
            "one pod's (pod id)",
            ContainerFilter {
                pod_sandbox_id: one_pod.clone(),
                ..Default::default()
            },
        ),
        (
            "running (state)",
            ContainerFilter {
                state: Some(ContainerStateValue {
                    state: ContainerState::ContainerRunning as i32,
                }),
                ..Default::default()
            },
        ),
        (
            "one pod's (label)",
            ContainerFilter {
                label_selector: HashMap::from([(POD_LABEL.to_string(), one_name)]),
                ..Default::default()
            },
        ),
    ];
    for (what, filter) in filters {
        let samples = timed(calls, || {
            let mut c = c.clone();
            let request = ListContainersRequest {
                filter: Some(filter.clone()),
            };
            async move { c.list_containers(request).await.map(|_| ()) }
        })
        .await?;
        figures.push(figure(
            format!("{size}: ListContainers {what}"),
            "ms",
            samples,
        ));
    }
    // The round trip of the cheapest call, no listing at all: the floor under every
    // figure here, the client's and the transport's share of it included.
    let samples = timed(calls, || {
        let mut c = c.clone();
        async move { c.version(VersionRequest::default()).await.map(|_| ()) }
    })
    .await?;
    figures.push(figure(
        format!("{size}: Version (round-trip floor)"),
        "ms",
        samples,
    ));
    let samples = timed(calls, || {
        let mut c = c.clone();
        async move {
            c.list_pod_sandbox(ListPodSandboxRequest::default())
                .await
                .map(|_| ())
        }
    })
    .await?;
    figures.push(figure(format!("{size}: ListPodSandbox"), "ms", samples));
    let samples = timed(calls, || {
        let mut c = c.clone();
        async move {
            c.list_container_stats(ListContainerStatsRequest::default())
                .await
                .map(|_| ())
        }
    })
    .await?;
    figures.push(figure(format!("{size}: ListContainerStats"), "ms", samples));
    let samples = timed(calls, || {
        let mut c = c.clone();
        async move {
            c.list_pod_sandbox_stats(ListPodSandboxStatsRequest::default())
                .await
                .map(|_| ())
        }
    })
    .await?;
    figures.push(figure(
        format!("{size}: ListPodSandboxStats"),
        "ms",
        samples,
    ));
    let target = w.containers[w.containers.len() / 2].clone();
    let samples = timed(calls, || {
        let mut c = c.clone();
        let request = ExecSyncRequest {
            container_id: target.clone(),
            cmd: vec!["true".to_string()],
            timeout: 30,
        };
        async move {
            let reply = c.exec_sync(request).await?.into_inner();
            if reply.exit_code != 0 {
                return Err(tonic::Status::internal(format!(
                    "ExecSync true exited {}",
                    reply.exit_code
                )));
            }
            Ok(())
        }
    })
    .await?;
    figures.push(figure(format!("{size}: ExecSync"), "ms", samples));
    let gone = w.remove().await?;
    figures.push(figure(
        format!("{size}: teardown of all pods at once (wall)"),
        "ms",
        vec![ms(gone)],
    ));
    // The container listing must be empty again.
    let left = c
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await?
        .into_inner()
        .items
        .len();
    if left != 0 {
        return Err(format!("{left} pods left after the teardown").into());
    }
    Ok(figures)
}

/// One process as `/proc/<pid>/stat` shows it.
struct Proc {
    ppid: u32,
    comm: String,
    /// utime + stime, in clock ticks.
    ticks: u64,
}

fn read_proc(pid: u32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    // Fields after the comm: state(3) ppid(4) ... utime(14) stime(15).
    let rest: Vec<&str> = stat[close + 2..].split(' ').collect();
    let ppid = rest.get(1)?.parse().ok()?;
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some(Proc {
        ppid,
        comm,
        ticks: utime + stime,
    })
}

/// The runtime's processes (see the module comment), by pid.
fn runtime_processes(marker: &str, daemon: u32) -> BTreeMap<u32, Proc> {
    let me = std::process::id();
    let mut all = BTreeMap::new();
    let mut roots = BTreeSet::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Some(proc) = read_proc(pid) else { continue };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if pid == daemon || (pid != me && cmdline.contains(marker)) {
            roots.insert(pid);
        }
        all.insert(pid, proc);
    }
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, proc) in &all {
        children.entry(proc.ppid).or_default().push(pid);
    }
    let mut set = BTreeSet::new();
    let mut todo: Vec<u32> = roots.into_iter().collect();
    while let Some(pid) = todo.pop() {
        if pid == me || !set.insert(pid) {
            continue;
        }
        todo.extend(children.get(&pid).into_iter().flatten());
    }
    all.into_iter()
        .filter(|(pid, p)| set.contains(pid) && p.comm != "sleep")
        .collect()
}

/// A `Name:  N kB` field of a /proc file, in kB.
fn kb(file: &str, field: &str) -> Option<u64> {
    file.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn pss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| kb(&s, "Pss:"))
        .unwrap_or(0)
}

fn status_field(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| kb(&s, field))
}

fn mb(kb: u64) -> f64 {
    (kb as f64 / 1024.0 * 10.0).round() / 10.0
}

async fn memory(args: &Args) -> Result<Vec<Value>> {
    let pods = args.number("pods", None)? as usize;
    let per_pod = args.number("containers", None)? as usize;
    let idle = args.number("idle", Some(0))?;
    let marker = args.get("marker")?;
    let daemon = args.number("daemon-pid", None)? as u32;
    let channel = connect(args.get("endpoint")?).await?;
    ensure_image(&channel, args.get("image")?).await?;
    let mut w = Workload::new(&channel, args, &format!("mem{pods}"))?;
    w.make(pods, per_pod).await?;
    // Let what the creations left running (goroutines, tasks) settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let size = format!("{pods} pods × {per_pod}");
    let procs = runtime_processes(marker, daemon);
    let total: u64 = procs.keys().map(|&pid| pss_kb(pid)).sum();
    let mut figures = vec![
        figure(
            format!("{size}: node PSS, daemon + supervisors/shims (MB)"),
            "MB",
            vec![mb(total)],
        ),
        figure(
            format!("{size}: agent/containerd PSS (MB)"),
            "MB",
            vec![mb(pss_kb(daemon))],
        ),
        figure(
            format!("{size}: agent/containerd threads"),
            "threads",
            vec![status_field(daemon, "Threads:").unwrap_or(0) as f64],
        ),
        figure(
            format!("{size}: processes counted"),
            "processes",
            vec![procs.len() as f64],
        ),
    ];
    if idle > 0 {
        let before = runtime_processes(marker, daemon);
        tokio::time::sleep(Duration::from_secs(idle)).await;
        let after = runtime_processes(marker, daemon);
        let used: u64 = after
            .iter()
            .filter_map(|(pid, p)| before.get(pid).map(|b| p.ticks.saturating_sub(b.ticks)))
            .sum();
        figures.push(figure(
            format!("{size}: idle CPU over {idle} s, no calls (ticks)"),
            "ticks",
            vec![used as f64],
        ));
    }
    w.remove().await?;
    Ok(figures)
}

async fn list(args: &Args) -> Result<Vec<Value>> {
    let calls = args.number("calls", Some(1000))?;
    let channel = connect(args.get("endpoint")?).await?;
    let client = RuntimeServiceClient::new(channel);
    let samples = timed(calls, || {
        let mut c = client.clone();
        async move {
            c.list_containers(ListContainersRequest::default())
                .await
                .map(|_| ())
        }
    })
    .await?;
    Ok(vec![figure("ListContainers all".into(), "ms", samples)])
}

async fn pull(args: &Args) -> Result<Vec<Value>> {
    let image = args.get("image")?;
    let times = args.number("times", Some(3))?;
    let label = args.get("label")?;
    let daemon = args.number("daemon-pid", None)? as u32;
    let channel = connect(args.get("endpoint")?).await?;
    let mut images = ImageServiceClient::new(channel);
    let spec = ImageSpec {
        image: image.to_string(),
        ..Default::default()
    };
    let (mut walls, mut peaks) = (Vec::new(), Vec::new());
    for _ in 0..times {
        // Not there before the pull (a removal of what is missing is no error).
        images
            .remove_image(RemoveImageRequest {
                image: Some(spec.clone()),
            })
            .await?;
        let _ = std::fs::write(format!("/proc/{daemon}/clear_refs"), "5");
        let start = Instant::now();
        images
            .pull_image(PullImageRequest {
                image: Some(spec.clone()),
                ..Default::default()
            })
            .await?;
        walls.push(ms(start.elapsed()));
        peaks.push(mb(status_field(daemon, "VmHWM:").unwrap_or(0)));
    }
    images
        .remove_image(RemoveImageRequest { image: Some(spec) })
        .await?;
    let peak_rss = if Path::new(&format!("/proc/{daemon}")).exists() {
        peaks
    } else {
        Vec::new()
    };
    Ok(vec![
        figure(format!("pull {label}: wall"), "ms", walls),
        figure(
            format!("pull {label}: peak RSS of agent/containerd (MB)"),
            "MB",
            peak_rss,
        ),
    ])
}
