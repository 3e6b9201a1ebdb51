//! Integration tests of `runtimes::network` with Debian's containernetworking-plugins
//! (/usr/lib/cni), as root. Every test has its own conf dir, run dir, bridge
//! (`bt<random>`) and subnet (a free `10.2xx.0.0/16`), so they run in parallel with each
//! other and with the rest of the workspace's tests; traffic goes only to 127.0.0.1 and
//! into the tests' own namespaces. Each `Env` deletes its bridge on drop; the shared
//! `CNI-HOSTPORT-*` chains portmap creates are left alone.

mod attach;
mod failures;
mod leaks;
mod pins;
mod userns;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use berth_testkit::host::run;
use berth_testkit::host::{self, random};
use nix::mount::{umount2, MntFlags};
use nix::sched::{setns, CloneFlags};
use runtimes::network::{Network, NetworkConfig, PodNetwork};
use runtimes::types::{PortMapping, Protocol};
use serde_json::{json, Value};

/// Where Debian puts the plugins.
pub const DEBIAN_CNI: &str = "/usr/lib/cni";

/// One test's private network: conf dir, run dir, bridge and subnet.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub config: NetworkConfig,
    pub net: Network,
    pub bridge: String,
    /// `10.X.`: every pod address starts with it.
    pub prefix: String,
    /// In every key of this test, so its iptables rules can be told apart.
    pub tag: String,
}

impl Env {
    /// Berth's default network (the conf dir starts empty).
    pub fn default_network() -> Env {
        Self::build(None)
    }

    /// The default bridge followed by `extra` plugins, with the test's fake plugins
    /// (`Env::fake`) found before Debian's.
    pub fn with_plugins(extra: Vec<Value>) -> Env {
        Self::build(Some(extra))
    }

    fn build(extra: Option<Vec<Value>>) -> Env {
        berth_testkit::require::root(
            "the network tests create bridges, namespaces and iptables rules",
        );
        assert!(
            Path::new(DEBIAN_CNI).join("bridge").exists(),
            "containernetworking-plugins is not installed (hack/install-deps)"
        );
        let dir = tempfile::tempdir().unwrap();
        let tag = format!("{:08x}", random());
        let bridge = format!("bt{tag}");
        let x = host::free_subnet_octet(200..255);
        let conf = dir.path().join("conf");
        let fake = dir.path().join("fake");
        fs::create_dir_all(&fake).unwrap();
        if let Some(extra) = extra {
            let ipam = dir.path().join("run/cni/ipam");
            let mut plugins = vec![json!({
                "type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false,
                "hairpinMode": true,
                "ipam": {"type": "host-local", "ranges": [[{"subnet": format!("10.{x}.0.0/16")}]],
                         "routes": [{"dst": "0.0.0.0/0"}], "dataDir": ipam}
            })];
            plugins.extend(extra);
            fs::create_dir_all(&conf).unwrap();
            let list = json!({"cniVersion": "1.0.0", "name": "berth", "plugins": plugins});
            fs::write(conf.join("10-test.conflist"), list.to_string()).unwrap();
        }
        let config = NetworkConfig {
            conf_dir: conf,
            plugin_dirs: vec![fake, PathBuf::from(DEBIAN_CNI)],
            default_subnet: format!("10.{x}.0.0/16"),
            default_bridge: bridge.clone(),
            conf_template: None,
        };
        let net = Network::new(config.clone(), &dir.path().join("run")).unwrap();
        Env {
            dir,
            config,
            net,
            bridge,
            prefix: format!("10.{x}."),
            tag,
        }
    }

    /// A pod key unique to this test.
    pub fn key(&self, name: &str) -> String {
        format!("{name}-{}", self.tag)
    }

    pub fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run").canonicalize().unwrap()
    }

    /// A fake plugin named `name` running `body` (shell) after reading its stdin.
    pub fn fake(&self, name: &str, body: &str) {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(self.dir.path().join("fake").join(name))
            .unwrap();
        write!(f, "#!/bin/sh\ncat >/dev/null\n{body}\n").unwrap();
    }

    /// The host-side veths on this test's bridge.
    pub fn bridge_ports(&self) -> Vec<String> {
        host::bridge_ports(&self.bridge)
    }

    /// Addresses host-local holds (its `lock` and `last_reserved_ip.*` files aside).
    pub fn allocations(&self) -> Vec<String> {
        host::ipam_allocations(&self.run_dir().join("cni/ipam/berth"))
    }

    /// nat-table rules that mention this test: its tag (in every key, hence in
    /// portmap's comments) or its subnet, and the rules of the chains they name.
    pub fn nat_rules(&self) -> Vec<String> {
        host::nat_rules(&[&self.tag, &self.prefix])
    }

    /// Mounts of namespace pins under this test's run dir (not the pin dirs themselves).
    pub fn pin_mounts(&self) -> Vec<String> {
        let run = self.run_dir();
        let dirs: Vec<String> = ["netns", "ipcns", "utsns", "userns"]
            .iter()
            .map(|d| format!("{}/", run.join(d).display()))
            .collect();
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| dirs.iter().any(|d| m.starts_with(d.as_str())))
            .map(str::to_string)
            .collect()
    }

    /// Attachment cache records left.
    pub fn cached(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.run_dir().join("cni/cache"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Everything a pod could leave behind, for before/after comparisons.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            bridge_ports: self.bridge_ports(),
            allocations: self.allocations(),
            nat_rules: self.nat_rules(),
            pin_mounts: self.pin_mounts(),
            cached: self.cached(),
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Leftovers exist only when a test failed; remove what carries our tag.
        host::remove_nat_rules(&self.tag);
        if Path::new("/sys/class/net").join(&self.bridge).exists() {
            let _ = Command::new("ip")
                .args(["link", "del", &self.bridge])
                .status();
        }
        if let Ok(run) = self.dir.path().join("run").canonicalize() {
            for d in ["netns", "ipcns", "utsns"] {
                if let Ok(pins) = fs::read_dir(run.join(d)) {
                    for pin in pins.flatten() {
                        let _ = umount2(&pin.path(), MntFlags::MNT_DETACH);
                    }
                }
                let _ = umount2(&run.join(d), MntFlags::MNT_DETACH);
            }
        }
    }
}

/// What a pod could leave behind on the host.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub bridge_ports: Vec<String>,
    pub allocations: Vec<String>,
    pub nat_rules: Vec<String>,
    pub pin_mounts: Vec<String>,
    pub cached: Vec<String>,
}

/// A pod with one hostPort mapping `host_port` → `container_port`.
pub fn pod(name: &str, host_port: u16, container_port: u16) -> PodNetwork {
    PodNetwork {
        name: name.to_string(),
        namespace: "default".into(),
        uid: format!("uid-{name}"),
        port_mappings: vec![PortMapping {
            protocol: Protocol::Tcp,
            container_port,
            host_port,
            host_ip: String::new(),
        }],
    }
}

/// Ports nobody listens on now (bound and released), distinct from each other.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// A TCP server inside the namespace pinned at `netns`: answers `connections`
/// connections on `port` with `reply`, then ends (and so stops holding the namespace).
pub fn serve_in(
    netns: &Path,
    port: u16,
    reply: &'static str,
    connections: usize,
) -> JoinHandle<()> {
    let ns = File::open(netns).unwrap();
    let (ready_tx, ready_rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        setns(&ns, CloneFlags::CLONE_NEWNET).unwrap();
        drop(ns);
        let listener = TcpListener::bind(("0.0.0.0", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        ready_tx.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut served = 0;
        while served < connections && Instant::now() < deadline {
            match listener.accept() {
                Ok((mut conn, _)) => {
                    conn.set_nonblocking(false).unwrap();
                    conn.write_all(reply.as_bytes()).unwrap();
                    served += 1;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    handle
}

/// What a server at `addr` says.
pub fn fetch(addr: SocketAddr) -> std::io::Result<String> {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut out = String::new();
    conn.read_to_string(&mut out)?;
    Ok(out)
}

/// The chains `iptables -S` lines jump to that portmap made for one pod.
pub fn dnat_chains(rules: &[String]) -> Vec<String> {
    rules
        .iter()
        .filter_map(|r| r.split(" -j ").nth(1))
        .filter(|c| c.starts_with("CNI-DN-"))
        .map(|c| c.trim().to_string())
        .collect()
}
