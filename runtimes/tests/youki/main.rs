//! Integration tests of the youki backend: real images pulled from Debian's
//! `docker-registry` on 127.0.0.1, real containers run by libcontainer under real
//! supervisors, as root. The supervisor is the `berth-youki-shim` binary of this crate
//! (`YoukiConfig.shim`); berth itself re-execs its own binary as `berth shim`.
//!
//! Every test has its own state and run dirs, cgroup parent, CNI bridge and subnet, so
//! tests run in parallel with each other and with the rest of the workspace; traffic
//! goes only to 127.0.0.1 and into the tests' own pod namespaces. Each ends by removing
//! what it made and checking nothing is left: mounts, cgroups, records, supervisors.

mod containers;
mod exec;
mod features;
mod images;
mod pods;
mod restart;
mod signals;
mod stop;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_testkit::host::{self, Leftovers};
pub use berth_testkit::host::{cgroup_dirs, processes_mentioning};
use berth_testkit::images::busybox_registry;
use berth_testkit::servers::Registry;
use oci_spec::runtime::{ProcessBuilder, RootBuilder, Spec};
use runtimes::image::{ImageStore, RegistryConfig};
use runtimes::network::{Network, NetworkConfig};
use runtimes::types::{
    ContainerSpec, ContainerState, ContainerStatus, ImageInfo, NamespaceMode, NamespaceOptions,
    PullRequest, SandboxSpec,
};
use runtimes::youki::{YoukiConfig, YoukiRuntime};
use runtimes::{ContainerId, Runtime};

/// The supervisor executable built with these tests.
pub const SHIM: &str = env!("CARGO_BIN_EXE_berth-youki-shim");

/// The directories `runtimes::network` pins namespaces in, under the run dir.
const PIN_DIRS: [&str; 4] = ["netns", "ipcns", "utsns", "userns"];

/// One test's world: a registry holding a busybox image, and directories for the
/// image store, the backend's state and run dirs and the CNI config.
pub struct Env {
    /// The registry (`None` in an agent child process, which uses its parent's).
    pub registry: Option<Registry>,
    pub registry_addr: String,
    /// The test's directory (removed on drop when `tmp` owns it).
    pub root: PathBuf,
    tmp: Option<tempfile::TempDir>,
    /// The busybox image's reference.
    pub image: String,
    /// Unique to the test: in its cgroup parent, bridge and ids.
    pub tag: String,
    /// `10.X.`: this test's pod subnet.
    pub prefix: String,
}

impl Env {
    pub async fn new() -> Env {
        berth_testkit::require::root("the youki tests run containers");
        let (registry, image) = busybox_registry().await;
        let tag = format!("{:08x}", host::random());
        // 10.150-199: away from the network tests' 10.200-254.
        let x = host::free_subnet_octet(150..200);
        let tmp = tempfile::tempdir().unwrap();
        Env {
            image,
            registry_addr: registry.addr.clone(),
            registry: Some(registry),
            root: tmp.path().to_path_buf(),
            tmp: Some(tmp),
            tag,
            prefix: format!("10.{x}."),
        }
    }

    /// What a child process needs to act on this test's world (see [`Env::adopt`]).
    pub fn describe(&self) -> String {
        serde_json::json!({
            "registry": self.registry_addr,
            "root": self.root,
            "image": self.image,
            "tag": self.tag,
            "prefix": self.prefix,
        })
        .to_string()
    }

    /// The world [`Env::describe`] described, owned by another process.
    pub fn adopt(description: &str) -> Env {
        let v: serde_json::Value = serde_json::from_str(description).unwrap();
        let s = |k: &str| v[k].as_str().unwrap().to_string();
        Env {
            registry: None,
            registry_addr: s("registry"),
            root: PathBuf::from(s("root")),
            tmp: None,
            image: s("image"),
            tag: s("tag"),
            prefix: s("prefix"),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }

    /// Long on purpose: the supervisors' socket paths are then longer than a unix
    /// socket address holds (108 bytes), which the backend must cope with.
    pub fn run_dir(&self) -> PathBuf {
        self.root
            .join("run-dir-long-enough-that-a-socket-path-below-it-exceeds-sun-path")
    }

    pub fn bridge(&self) -> String {
        format!("by{}", &self.tag)
    }

    /// The cgroup parent of this test's pods.
    pub fn cgroup_parent(&self) -> String {
        format!("/berth-test/{}", self.tag)
    }

    /// Opens the image store (the registry is plain http).
    pub fn images(&self) -> Arc<ImageStore> {
        let config: RegistryConfig =
            serde_json::from_value(serde_json::json!({ "insecure": [self.registry_addr] }))
                .unwrap();
        Arc::new(ImageStore::open(&self.state_dir().join("images"), config).unwrap())
    }

    /// The backend's configuration.
    pub fn config(&self) -> YoukiConfig {
        let network = NetworkConfig {
            conf_dir: self.root.join("cni"),
            plugin_dirs: vec![PathBuf::from("/usr/lib/cni")],
            default_subnet: format!("{}0.0/16", self.prefix),
            default_bridge: self.bridge(),
            conf_template: None,
        };
        YoukiConfig {
            state_dir: self.state_dir(),
            run_dir: self.run_dir(),
            shim: PathBuf::from(SHIM),
            network: Arc::new(Network::new(network, &self.run_dir()).unwrap()),
            cgroup_parent: self.cgroup_parent(),
        }
    }

    /// Opens the backend (the image store first) and pulls the busybox image.
    pub async fn open(&self) -> (YoukiRuntime, ImageInfo) {
        let runtime = YoukiRuntime::open(self.images(), self.config())
            .await
            .unwrap();
        let image = runtime
            .pull_image(&PullRequest {
                reference: self.image.clone(),
                auth: None,
            })
            .await
            .unwrap();
        (runtime, image)
    }

    /// A pod id of this test.
    pub fn pod_id(&self, service: &str) -> ContainerId {
        ContainerId::new(format!("{service}.t{}", self.tag), "sandbox", 0, "node-1").unwrap()
    }

    /// Asserts that nothing of this test is left: no mounts under its directory, no
    /// cgroups under its cgroup parent, no records, no supervisor process.
    pub fn assert_clean(&self) {
        let dir = self.root.to_string_lossy().into_owned();
        // The pin directories stay mounted onto themselves (shared, so unpins
        // propagate); only what is mounted in them or elsewhere counts.
        let pin_dirs: Vec<String> = PIN_DIRS
            .iter()
            .map(|d| self.run_dir().join(d).to_string_lossy().into_owned())
            .collect();
        let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&dir))
            .filter(|l| {
                !pin_dirs
                    .iter()
                    .any(|p| l.split(' ').nth(4) == Some(p.as_str()))
            })
            .map(String::from)
            .collect();
        assert_eq!(mounts, Vec::<String>::new(), "mounts left");
        let cgroups = host::cgroups_below(&self.cgroup_parent());
        assert_eq!(cgroups, Vec::<PathBuf>::new(), "cgroups left");
        for d in ["youki/pods", "youki/containers"] {
            assert_eq!(
                berth_testkit::names(&self.state_dir().join(d)),
                Vec::<String>::new(),
                "{d} left"
            );
        }
        assert_eq!(
            berth_testkit::names(&self.run_dir().join("youki/pods")),
            Vec::<String>::new(),
            "supervisor dirs left"
        );
        assert_eq!(
            processes_mentioning(&dir),
            Vec::<String>::new(),
            "processes left"
        );
    }
}

impl Drop for Env {
    /// A safety net for a test that failed half way (a passing test has removed
    /// everything already).
    fn drop(&mut self) {
        if self.tmp.is_none() {
            return;
        }
        host::sweep(&Leftovers {
            dir: &self.root,
            cgroup_parent: &self.cgroup_parent(),
            bridge: &self.bridge(),
            tag: &self.tag,
        });
    }
}

/// A pod spec: host network or its own.
pub fn sandbox(name: &str, network: NamespaceMode) -> SandboxSpec {
    SandboxSpec {
        name: name.to_string(),
        namespace: "default".into(),
        uid: format!("uid-{name}"),
        namespaces: NamespaceOptions {
            network,
            pid: NamespaceMode::Container,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A container spec running `args` from `image`, logging to `log`.
pub fn container(image: &ImageInfo, args: &[&str], log: Option<PathBuf>) -> ContainerSpec {
    let mut oci = Spec::default();
    oci.set_process(Some(
        ProcessBuilder::default()
            .args(args.iter().map(|a| a.to_string()).collect::<Vec<_>>())
            .env(vec!["PATH=/bin".to_string(), "HOME=/root".to_string()])
            .cwd("/")
            .build()
            .unwrap(),
    ));
    oci.set_root(Some(
        RootBuilder::default().readonly(false).build().unwrap(),
    ));
    oci.set_hostname(None);
    ContainerSpec {
        image: image.repo_tags.first().cloned().unwrap_or_default(),
        image_id: image.id.clone(),
        oci,
        log_path: log,
        namespaces: NamespaceOptions {
            pid: NamespaceMode::Container,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Polls `status` of `id` until `done` says so (or panics after `within`).
pub async fn wait_status(
    runtime: &YoukiRuntime,
    id: &ContainerId,
    within: Duration,
    done: impl Fn(&ContainerStatus) -> bool,
) -> ContainerStatus {
    let deadline = Instant::now() + within;
    loop {
        let status = runtime.container_status(id).await.unwrap();
        if done(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never got there: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for `id` to exit.
pub async fn wait_exited(runtime: &YoukiRuntime, id: &ContainerId) -> ContainerStatus {
    wait_status(runtime, id, Duration::from_secs(20), |s| {
        s.state == ContainerState::Exited
    })
    .await
}

/// The records of a CRI log file: (stream, tag, text), timestamps checked.
pub fn log_records(path: &Path) -> Vec<(String, String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let mut f = line.splitn(4, ' ');
            let ts = f.next().unwrap();
            chrono::DateTime::parse_from_rfc3339(ts)
                .unwrap_or_else(|e| panic!("timestamp {ts:?} of {line:?}: {e}"));
            (
                f.next().unwrap().to_string(),
                f.next().unwrap().to_string(),
                f.next().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The texts of a log's records, in order.
pub fn log_text(path: &Path) -> String {
    log_records(path)
        .into_iter()
        .map(|(_, _, t)| t + "\n")
        .collect()
}

/// Removes the pods `ids` and checks nothing is left.
pub async fn remove_all(env: &Env, runtime: &YoukiRuntime, pods: &[&ContainerId]) {
    for pod in pods {
        runtime.stop_pod_sandbox(pod).await.unwrap();
        runtime.remove_pod_sandbox(pod).await.unwrap();
    }
    env.assert_clean();
}

/// VmRSS, RssAnon and Pss of `pid`, in KiB.
pub fn memory(pid: i32) -> (u64, u64, u64) {
    let field = |file: &str, key: &str| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .unwrap()
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (
        field("status", "VmRSS:"),
        field("status", "RssAnon:"),
        field("smaps_rollup", "Pss:"),
    )
}
