//! The attach/detach logic against fake plugins: small shell scripts that record their
//! environment and stdin and print canned results (like containerd rust-extensions' fake
//! binaries). Each test pins a private network namespace, so these run as root.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{umount2, MntFlags};
use serde_json::{json, Value};

use super::*;
use crate::error::Error;
use crate::types::{PortMapping, Protocol};

const KEY: &str = "pod-1";

/// The bridge-like plugin's result.
fn r1() -> Value {
    json!({"cniVersion": "1.0.0",
           "interfaces": [{"name": "br"}, {"name": "eth0", "sandbox": "/ns"}],
           "ips": [{"address": "10.9.0.7/16", "gateway": "10.9.0.1", "interface": 1}]})
}

/// The portmap-like plugin's result (what it got, passed on).
fn r2() -> Value {
    let mut r = r1();
    r["dns"] = json!({"nameservers": ["10.9.0.1"]});
    r
}

struct Fixture {
    dir: tempfile::TempDir,
    net: Network,
    netns: PathBuf,
}

impl Fixture {
    fn new(plugins: Value) -> Self {
        Self::with_timeout(plugins, PLUGIN_TIMEOUT)
    }

    fn with_timeout(plugins: Value, timeout: Duration) -> Self {
        berth_testkit::require::root("the network tests pin a private network namespace");
        let dir = tempfile::tempdir().unwrap();
        for d in ["conf", "bin", "rec"] {
            fs::create_dir(dir.path().join(d)).unwrap();
        }
        let list = json!({"cniVersion": "1.0.0", "name": "testnet", "plugins": plugins});
        fs::write(dir.path().join("conf/10-test.conflist"), list.to_string()).unwrap();
        let config = NetworkConfig {
            conf_dir: dir.path().join("conf"),
            plugin_dirs: vec![dir.path().join("missing"), dir.path().join("bin")],
            ..Default::default()
        };
        let net = Network::with_timeout(config, &dir.path().join("run"), timeout).unwrap();
        let netns = net.pin(NsKind::Net, KEY).unwrap();
        Fixture { dir, net, netns }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A fake plugin: records its call, then runs `add` or `del` as shell code.
    fn fake(&self, name: &str, add: &str, del: &str) {
        let rec = self.path("rec");
        let rec = rec.display();
        let script = format!(
            "#!/bin/sh\n\
             in=$(cat)\n\
             echo \"{name} $CNI_COMMAND\" >> {rec}/calls\n\
             printf '%s' \"$in\" > {rec}/{name}.$CNI_COMMAND.stdin\n\
             env | grep '^CNI_' | sort > {rec}/{name}.$CNI_COMMAND.env\n\
             case \"$CNI_COMMAND\" in\n\
             ADD) {add} ;;\n\
             DEL) {del} ;;\n\
             esac\n"
        );
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(self.path("bin").join(name))
            .unwrap();
        f.write_all(script.as_bytes()).unwrap();
    }

    fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.path("rec/calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn stdin(&self, plugin: &str, command: &str) -> Value {
        let text = fs::read(self.path(&format!("rec/{plugin}.{command}.stdin"))).unwrap();
        serde_json::from_slice(&text).unwrap()
    }

    fn env(&self, plugin: &str, command: &str) -> String {
        fs::read_to_string(self.path(&format!("rec/{plugin}.{command}.env"))).unwrap()
    }

    fn cached(&self) -> bool {
        self.path(&format!("run/cni/cache/{KEY}.json")).exists()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.net.unpin(NsKind::Net, KEY);
        let _ = umount2(&self.path("run/netns"), MntFlags::MNT_DETACH);
    }
}

/// What the portmap-like `fb` must get on stdin, with `prev` as its prevResult.
fn fb_stdin(prev: Value) -> Value {
    json!({"type": "fb", "snat": true, "cniVersion": "1.0.0", "name": "testnet",
           "runtimeConfig": {"portMappings": [
               {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
           "prevResult": prev})
}

fn prints(v: &Value) -> String {
    format!("printf '%s' '{v}'")
}

const FAIL: &str = r#"printf '%s' '{"cniVersion":"1.0.0","code":7,"msg":"bad portmap","details":"no such thing"}'; exit 1"#;

fn pod() -> PodNetwork {
    PodNetwork {
        name: "web".into(),
        namespace: "default".into(),
        uid: "uid-1".into(),
        port_mappings: vec![PortMapping {
            protocol: Protocol::Tcp,
            container_port: 80,
            host_port: 8080,
            host_ip: String::new(),
        }],
    }
}

impl Fixture {
    /// `fa` (bridge-like, prints r1) then `fb` (portmap-like, prints r2).
    fn two_working_plugins() -> Self {
        let f = Fixture::new(json!([
            {"type": "fa", "bridge": "b0"},
            {"type": "fb", "capabilities": {"portMappings": true}, "snat": true}
        ]));
        f.fake("fa", &prints(&r1()), "");
        f.fake("fb", &prints(&r2()), "");
        f
    }
}

#[tokio::test]
async fn attach_runs_the_chain_with_the_cni_environment_and_stdin() {
    let f = Fixture::two_working_plugins();
    let a = f.net.attach(KEY, &f.netns, &pod()).await.unwrap();
    assert_eq!(a.ips, vec!["10.9.0.7"]);
    assert_eq!(a.interface, "eth0");
    assert_eq!(f.calls(), vec!["fa ADD", "fb ADD"]);
    let cni_path = format!(
        "{}:{}",
        f.path("missing").display(),
        f.path("bin").display()
    );
    assert_eq!(
        f.env("fa", "ADD"),
        format!(
            "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;\
             K8S_POD_INFRA_CONTAINER_ID={KEY};K8S_POD_UID=uid-1\n\
             CNI_COMMAND=ADD\nCNI_CONTAINERID={KEY}\nCNI_IFNAME=eth0\nCNI_NETNS={}\n\
             CNI_PATH={cni_path}\n",
            f.netns.display()
        )
    );
    assert_eq!(
        f.stdin("fa", "ADD"),
        json!({"type": "fa", "bridge": "b0", "cniVersion": "1.0.0", "name": "testnet"})
    );
    assert_eq!(f.stdin("fb", "ADD"), fb_stdin(r1()));
    assert!(f.cached());

    // Attached already: the cached result, no plugin run.
    assert_eq!(f.net.attach(KEY, &f.netns, &pod()).await.unwrap(), a);
    assert_eq!(f.calls().len(), 2);
}

#[tokio::test]
async fn attach_brings_loopback_up() {
    let f = Fixture::two_working_plugins();
    // A fresh namespace's lo is down: nothing reaches 127.0.0.1.
    let loopback_works = || {
        in_namespace(NsKind::Net, &f.netns, || {
            let l = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
            let addr = l.local_addr().ok()?;
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()
        })
        .unwrap()
        .is_some()
    };
    assert!(!loopback_works(), "lo starts down in a new namespace");
    f.net.attach(KEY, &f.netns, &pod()).await.unwrap();
    assert!(loopback_works(), "lo is up after attach");
}

#[tokio::test]
async fn detach_runs_del_in_reverse_with_what_the_add_used() {
    let f = Fixture::two_working_plugins();
    f.net.attach(KEY, &f.netns, &pod()).await.unwrap();
    // The config changes after the ADD: DEL still runs the list the ADD ran.
    fs::write(
        f.path("conf/10-test.conflist"),
        json!({"cniVersion": "1.0.0", "name": "other", "plugins": [{"type": "fz"}]}).to_string(),
    )
    .unwrap();
    let other_pod = PodNetwork::default();
    f.net.detach(KEY, None, &other_pod).await.unwrap();
    assert_eq!(f.calls(), vec!["fa ADD", "fb ADD", "fb DEL", "fa DEL"]);
    assert_eq!(f.stdin("fb", "DEL"), fb_stdin(r2()));
    assert_eq!(f.stdin("fa", "DEL")["prevResult"], r2());
    assert_eq!(
        f.env("fa", "DEL"),
        f.env("fa", "ADD")
            .replace("CNI_COMMAND=ADD", "CNI_COMMAND=DEL")
    );
    assert!(!f.cached());

    // Detached already, and never attached: nothing runs.
    f.net.detach(KEY, None, &pod()).await.unwrap();
    f.net.detach("never-attached", None, &pod()).await.unwrap();
    assert_eq!(f.calls().len(), 4);
}

#[tokio::test]
async fn detach_without_the_namespace_passes_an_empty_netns() {
    let f = Fixture::two_working_plugins();
    f.net.attach(KEY, &f.netns, &pod()).await.unwrap();
    f.net.unpin(NsKind::Net, KEY).unwrap();
    f.net.detach(KEY, Some(&f.netns), &pod()).await.unwrap();
    assert!(f.env("fa", "DEL").contains("CNI_NETNS=\n"));
}

#[tokio::test]
async fn failed_add_undoes_the_plugins_that_ran_and_reports_the_plugin_error() {
    let f = Fixture::new(json!([{"type": "fa"}, {"type": "fb"}, {"type": "fc"}]));
    f.fake("fa", &prints(&r1()), "");
    f.fake("fb", FAIL, "");
    f.fake("fc", &prints(&r2()), "");
    let err = f.net.attach(KEY, &f.netns, &pod()).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(
            "CNI ADD of plugin fb (network testnet, pod pod-1) failed: bad portmap: \
                      no such thing (CNI error code 7)"
        ),
        "{msg}"
    );
    assert_eq!(f.calls(), vec!["fa ADD", "fb ADD", "fb DEL", "fa DEL"]);
    assert_eq!(f.stdin("fa", "DEL")["prevResult"], r1());
    assert!(!f.cached());
}

#[tokio::test]
async fn a_failed_undo_keeps_the_cache_and_detach_finishes_it() {
    let f = Fixture::new(json!([{"type": "fa"}, {"type": "fb"}]));
    let flag = f.path("rec/fail-del");
    let del = format!(
        "if [ -e {} ]; then printf '%s' '{{\"code\":11,\"msg\":\"busy\"}}'; exit 1; fi",
        flag.display()
    );
    f.fake("fa", &prints(&r1()), &del);
    f.fake("fb", FAIL, "");
    fs::write(&flag, "").unwrap();
    let msg = f
        .net
        .attach(KEY, &f.netns, &pod())
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.contains("bad portmap"), "{msg}");
    assert!(
        msg.contains("undoing it failed too: CNI DEL of plugin fa") && msg.contains("busy"),
        "{msg}"
    );
    assert!(f.cached());

    // DEL tries every plugin and reports the failures together; the cache stays.
    let msg = f
        .net
        .detach(KEY, None, &pod())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("detaching pod pod-1") && msg.contains("busy"),
        "{msg}"
    );
    assert!(f.cached());
    let n = f.calls().len();
    assert_eq!(f.calls()[n - 2..], ["fb DEL", "fa DEL"]);

    fs::remove_file(&flag).unwrap();
    f.net.detach(KEY, None, &pod()).await.unwrap();
    assert!(!f.cached());
}

#[tokio::test]
async fn a_missing_plugin_fails_before_anything_runs() {
    let f = Fixture::new(json!([{"type": "fa"}, {"type": "nope", "ipam": {"type": "nada"}}]));
    f.fake("fa", &prints(&r1()), "");
    let status = f.net.status().unwrap_err();
    assert!(
        status.contains("CNI plugin(s) nope, nada of network testnet"),
        "{status}"
    );
    let err = f.net.attach(KEY, &f.netns, &pod()).await.unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");
    assert!(err.to_string().contains("not ready"), "{err}");
    assert!(f.calls().is_empty());
    assert!(!f.cached());
}

#[tokio::test]
async fn a_hung_plugin_is_killed_after_the_timeout_and_undone() {
    let f = Fixture::with_timeout(
        json!([{"type": "fa"}, {"type": "fb"}]),
        Duration::from_millis(500),
    );
    let pidfile = f.path("rec/fb.pid");
    f.fake("fa", &prints(&r1()), "");
    f.fake(
        "fb",
        &format!("echo $$ > {}; exec sleep 60", pidfile.display()),
        "",
    );
    let start = Instant::now();
    let err = f.net.attach(KEY, &f.netns, &pod()).await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(
        err.to_string().contains("CNI ADD of plugin fb") && err.to_string().contains("500ms"),
        "{err}"
    );
    assert_eq!(f.calls(), vec!["fa ADD", "fb ADD", "fb DEL", "fa DEL"]);
    let pid = fs::read_to_string(&pidfile).unwrap();
    let proc = PathBuf::from(format!("/proc/{}", pid.trim()));
    let gone = Instant::now();
    while proc_alive(&proc) && gone.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!proc_alive(&proc), "the hung plugin was killed");
}

/// True while `proc` is a process that has not exited (zombies count as gone).
fn proc_alive(proc: &Path) -> bool {
    fs::read_to_string(proc.join("stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn a_cancelled_attach_is_undone_by_detach() {
    let f = Fixture::new(json!([{"type": "fa"}, {"type": "fb"}]));
    f.fake("fa", &prints(&r1()), "");
    f.fake("fb", "exec sleep 60", "");
    let p = pod();
    {
        let attach = f.net.attach(KEY, &f.netns, &p);
        tokio::pin!(attach);
        let started = f.path("rec/fb.ADD.env");
        let deadline = Instant::now() + Duration::from_secs(10);
        // Poll the attach until fb runs, then drop it (what a cancelled request does).
        while !started.exists() {
            assert!(Instant::now() < deadline, "fb never ran");
            tokio::select! {
                r = &mut attach => panic!("attach finished: {r:?}"),
                () = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
        }
    }
    assert!(f.cached(), "the unfinished attachment is recorded");
    f.net.detach(KEY, None, &pod()).await.unwrap();
    assert_eq!(f.calls(), vec!["fa ADD", "fb ADD", "fb DEL", "fa DEL"]);
    assert!(f.stdin("fa", "DEL").get("prevResult").is_none());
    assert!(!f.cached());
}

#[tokio::test]
async fn a_result_without_an_ip_is_an_error_and_undone() {
    let f = Fixture::new(json!([{"type": "fa"}]));
    f.fake(
        "fa",
        &prints(&json!({"cniVersion": "1.0.0", "interfaces": []})),
        "",
    );
    let err = f.net.attach(KEY, &f.netns, &pod()).await.unwrap_err();
    assert!(err.to_string().contains("no IP address for eth0"), "{err}");
    assert_eq!(f.calls(), vec!["fa ADD", "fa DEL"]);
    assert!(!f.cached());
}

#[tokio::test]
async fn bad_requests_are_rejected_before_any_plugin_runs() {
    let f = Fixture::new(json!([{"type": "fa"}]));
    f.fake("fa", &prints(&r1()), "");
    let bad_name = PodNetwork {
        name: "a;b".into(),
        ..pod()
    };
    let mut bad_port = pod();
    bad_port.port_mappings[0].host_ip = "not-an-ip".into();
    for (key, p) in [("../x", pod()), (KEY, bad_name), (KEY, bad_port)] {
        let err = f.net.attach(key, &f.netns, &p).await.unwrap_err();
        assert!(matches!(err, Error::InvalidSpec(_)), "{err:?}");
    }
    let not_a_netns = f.path("conf/10-test.conflist");
    let err = f.net.attach(KEY, &not_a_netns, &pod()).await.unwrap_err();
    assert!(
        err.to_string().contains("joining the net namespace"),
        "{err}"
    );
    assert!(f.calls().is_empty());
    assert!(!f.cached());
}

#[test]
fn new_writes_the_default_conflist_and_status_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let config = NetworkConfig {
        conf_dir: dir.path().join("net.d"),
        plugin_dirs: vec![dir.path().join("bin")],
        default_bridge: "bt-unit".into(),
        default_subnet: "10.250.0.0/16".into(),
        conf_template: None,
    };
    let net = Network::new(config.clone(), &dir.path().join("run")).unwrap();
    let written: Value = serde_json::from_slice(
        &fs::read(dir.path().join("net.d").join(DEFAULT_CONFLIST_FILE)).unwrap(),
    )
    .unwrap();
    let run = dir.path().join("run").canonicalize().unwrap();
    assert_eq!(written, config.default_conflist(&run.join("cni/ipam")));
    let status = net.status().unwrap_err();
    assert!(
        status.contains("CNI plugin(s) bridge, host-local, portmap of network berth"),
        "{status}"
    );
    fs::create_dir(dir.path().join("bin")).unwrap();
    for p in ["bridge", "host-local", "portmap"] {
        let path = dir.path().join("bin").join(p);
        fs::write(&path, "").unwrap();
        // Present but not executable does not count.
        assert!(net.status().is_err());
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    assert_eq!(net.status(), Ok(()));

    fs::remove_file(dir.path().join("net.d").join(DEFAULT_CONFLIST_FILE)).unwrap();
    let status = net.status().unwrap_err();
    assert!(status.starts_with("no CNI network config in"), "{status}");
}

/// The youki backend holds an `Arc<Network>` and awaits these in `Send` futures.
#[allow(dead_code)]
fn network_is_shareable_and_its_futures_are_send(net: &Network, pod: &PodNetwork) {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: T) {}
    send_sync(net);
    send(net.attach(KEY, Path::new("/"), pod));
    send(net.detach(KEY, None, pod));
}

#[test]
fn a_template_waits_for_the_pod_cidr_and_keeps_it_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("template.conflist");
    fs::write(
        &template,
        r#"{"cniVersion": "1.0.0", "name": "pods", "plugins": [{"type": "bridge",
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "{{.PodCIDR}}"}]]}}]}"#,
    )
    .unwrap();
    let conf_dir = dir.path().join("net.d");
    let config = NetworkConfig {
        conf_dir: conf_dir.clone(),
        plugin_dirs: vec![dir.path().join("bin")],
        conf_template: Some(template.clone()),
        ..Default::default()
    };
    let run = dir.path().join("run");
    let net = Network::new(config.clone(), &run).unwrap();
    // No default network while kubelet has not sent the CIDR.
    assert!(net.status().unwrap_err().contains("no CNI network config"));
    assert_eq!(net.pod_cidr(), None);
    assert!(net.set_pod_cidr("10.0.0.0/33").is_err());
    net.set_pod_cidr("").unwrap();
    assert!(!conf_dir.join(RENDERED_CONFLIST_FILE).exists());
    net.set_pod_cidr("10.244.3.0/24,fd00:3::/64").unwrap();
    let subnet = |dir: &Path| {
        let (list, _) = conflist::load(dir).unwrap();
        list.plugins[0]["ipam"]["ranges"][0][0]["subnet"].clone()
    };
    assert_eq!(subnet(&conf_dir), "10.244.3.0/24");
    assert_eq!(net.pod_cidr().as_deref(), Some("10.244.3.0/24,fd00:3::/64"));
    // A restarted berth renders it again, without kubelet sending it.
    fs::remove_file(conf_dir.join(RENDERED_CONFLIST_FILE)).unwrap();
    drop(net);
    let again = Network::new(config.clone(), &run).unwrap();
    assert_eq!(subnet(&conf_dir), "10.244.3.0/24");
    assert_eq!(
        again.pod_cidr().as_deref(),
        Some("10.244.3.0/24,fd00:3::/64")
    );
    // A template berth cannot use stops it at start.
    fs::write(&template, "{{.Routes}}").unwrap();
    let err = Network::new(config, &run).err().unwrap().to_string();
    assert!(err.contains("not supported"), "{err}");
}
