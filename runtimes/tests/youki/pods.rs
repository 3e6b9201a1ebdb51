//! Pod sandboxes: their own network (CNI), hostname, DNS, sysctls, a shared PID
//! namespace, an HTTP server reached on the pod IP and on a hostPort, and a stop that
//! gives the address back.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use runtimes::types::{DnsConfig, NamespaceMode, PortMapping, Protocol, SandboxState};
use runtimes::Runtime;

use crate::{container, log_text, remove_all, sandbox, wait_exited, wait_status, Env};

fn http_get(addr: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_has_its_network_names_and_sysctls() {
    let env = Env::new().await;
    let (rt, image) = env.open().await;
    let pod = env.pod_id("web");
    let host_port = berth_testkit::servers::free_port();
    let mut spec = sandbox("web", NamespaceMode::Pod);
    spec.hostname = "web-host".into();
    spec.dns = Some(DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec!["default.svc.cluster.local".into()],
        options: vec!["ndots:5".into()],
    });
    spec.sysctls = [
        ("net.core.somaxconn".to_string(), "1234".to_string()),
        ("kernel.shm_rmid_forced".to_string(), "1".to_string()),
    ]
    .into();
    spec.port_mappings = vec![PortMapping {
        protocol: Protocol::Tcp,
        container_port: 80,
        host_port,
        host_ip: String::new(),
    }];
    let status = rt.run_pod_sandbox(&pod, &spec).await.unwrap();
    assert_eq!(status.state, SandboxState::Ready);
    let ip = status.ips.first().cloned().expect("a pod IP");
    assert!(ip.starts_with(&env.prefix), "{ip}");
    assert_eq!(rt.pod_sandbox_status(&pod).await.unwrap(), status);

    let probe = pod.with_role("probe").unwrap();
    let log = env.root.join("probe.log");
    let script = "hostname; cat /etc/hostname /etc/resolv.conf; grep web-host /etc/hosts; \
                  cat /proc/sys/net/core/somaxconn /proc/sys/kernel/shm_rmid_forced; \
                  ip -4 -o addr show eth0; df /dev/shm | tail -n 1";
    rt.create_container(
        &pod,
        &probe,
        &container(&image, &["sh", "-c", script], Some(log.clone())),
    )
    .await
    .unwrap();
    rt.start_container(&probe).await.unwrap();
    assert_eq!(
        wait_exited(&rt, &probe).await.exit_code,
        0,
        "{}",
        log_text(&log)
    );
    let out = log_text(&log);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        &lines[..6],
        &[
            "web-host",
            "web-host",
            "search default.svc.cluster.local",
            "nameserver 10.96.0.10",
            "options ndots:5",
            &format!("{ip}\tweb-host"),
        ],
        "{out}"
    );
    assert_eq!(&lines[6..8], &["1234", "1"], "{out}");
    assert!(lines[8].contains(&format!("inet {ip}/")), "{out}");
    assert!(
        lines[9].starts_with("shm ") && lines[9].contains("65536"),
        "{out}"
    );

    let web = pod.with_role("web").unwrap();
    rt.create_container(
        &pod,
        &web,
        &container(&image, &["httpd", "-f", "-p", "80", "-h", "/www"], None),
    )
    .await
    .unwrap();
    rt.start_container(&web).await.unwrap();
    let page = "hello from a berth pod";
    let mut answer = String::new();
    for _ in 0..50 {
        answer = http_get(&format!("{ip}:80")).unwrap_or_default();
        if answer.contains(page) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answer.contains(page), "pod IP: {answer}");
    let via_host_port = http_get(&format!("127.0.0.1:{host_port}")).unwrap();
    assert!(via_host_port.contains(page), "hostPort: {via_host_port}");

    rt.stop_pod_sandbox(&pod).await.unwrap();
    let stopped = rt.pod_sandbox_status(&pod).await.unwrap();
    assert_eq!(stopped.state, SandboxState::NotReady);
    assert!(
        stopped.ips.is_empty() && stopped.netns_path.is_none(),
        "{stopped:?}"
    );
    assert_eq!(rt.container_status(&web).await.unwrap().exit_code, 137);
    assert!(
        http_get(&format!("{ip}:80")).is_err(),
        "the pod's address is gone"
    );
    let ipam = env.run_dir().canonicalize().unwrap().join("cni/ipam");
    let held: Vec<String> = walk_files(&ipam)
        .into_iter()
        .filter(|n| n.starts_with(&env.prefix))
        .collect();
    assert_eq!(held, Vec::<String>::new(), "the address was given back");
    remove_all(&env, &rt, &[&pod]).await;
}

fn walk_files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk_files(&e.path()));
        } else {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_pid_namespace_is_held_by_the_pod_init() {
    let env = Env::new().await;
    let (rt, image) = env.open().await;
    let pod = env.pod_id("pidns");
    let mut spec = sandbox("pidns", NamespaceMode::Node);
    spec.namespaces.pid = NamespaceMode::Pod;
    rt.run_pod_sandbox(&pod, &spec).await.unwrap();

    let sleeper = pod.with_role("sleeper").unwrap();
    let mut c = container(&image, &["sleep", "1000"], None);
    c.namespaces.pid = NamespaceMode::Pod;
    rt.create_container(&pod, &sleeper, &c).await.unwrap();
    rt.start_container(&sleeper).await.unwrap();

    let looker = pod.with_role("looker").unwrap();
    let log = env.root.join("looker.log");
    let mut c = container(
        &image,
        &[
            "sh",
            "-c",
            "cat /proc/1/cmdline | tr '\\0' ' '; echo; ps -o args",
        ],
        Some(log.clone()),
    );
    c.namespaces.pid = NamespaceMode::Pod;
    rt.create_container(&pod, &looker, &c).await.unwrap();
    rt.start_container(&looker).await.unwrap();
    assert_eq!(wait_exited(&rt, &looker).await.exit_code, 0);
    let out = log_text(&log);
    let pid1 = out.lines().next().unwrap();
    assert!(
        pid1.trim() == "pod-init",
        "PID 1 is berth's pod init: {out}"
    );
    assert!(
        out.contains("sleep 1000"),
        "containers of the pod see each other: {out}"
    );

    // Stopping one container of a shared namespace ends only its processes.
    rt.stop_container(&sleeper, Duration::ZERO).await.unwrap();
    let status = wait_status(&rt, &sleeper, Duration::from_secs(5), |s| {
        s.exit_code == 137
    })
    .await;
    assert_eq!(status.reason, "Error");
    remove_all(&env, &rt, &[&pod]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_pods_at_once_then_nothing_left() {
    let env = Env::new().await;
    let (rt, image) = env.open().await;
    let rt = std::sync::Arc::new(rt);
    let pods: Vec<_> = (0..20).map(|i| env.pod_id(&format!("many{i}"))).collect();
    let mut tasks = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let (rt, pod, image) = (rt.clone(), pod.clone(), image.clone());
        tasks.push(tokio::spawn(async move {
            let status = rt
                .run_pod_sandbox(&pod, &sandbox(&format!("many{i}"), NamespaceMode::Pod))
                .await
                .unwrap();
            let id = pod.with_role("app").unwrap();
            rt.create_container(&pod, &id, &container(&image, &["sleep", "1000"], None))
                .await
                .unwrap();
            rt.start_container(&id).await.unwrap();
            status.ips[0].clone()
        }));
    }
    let mut ips = Vec::new();
    for t in tasks {
        ips.push(t.await.unwrap());
    }
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 20, "every pod has an address of its own");
    let (mut anon, mut pss) = (0, 0);
    for pod in &pods {
        let pid_file = env
            .run_dir()
            .join("youki/pods")
            .join(runtimes::youki::layout::key(pod))
            .join("shim.pid");
        let pid = std::fs::read_to_string(pid_file).unwrap();
        let (_, a, p) = crate::memory(pid.trim().parse().unwrap());
        anon += a;
        pss += p;
    }
    eprintln!(
        "20 supervisors with a container each: RssAnon {} KiB, Pss {} KiB on average",
        anon / 20,
        pss / 20
    );
    let mut tasks = Vec::new();
    for pod in pods.clone() {
        let rt = rt.clone();
        tasks.push(tokio::spawn(async move {
            rt.stop_pod_sandbox(&pod).await.unwrap();
            rt.remove_pod_sandbox(&pod).await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    env.assert_clean();
    let ipam = env.run_dir().canonicalize().unwrap().join("cni/ipam");
    let held: Vec<String> = walk_files(&ipam)
        .into_iter()
        .filter(|n| n.starts_with(&env.prefix))
        .collect();
    assert_eq!(held, Vec::<String>::new(), "every address was given back");
    let bridge_ports = std::fs::read_dir(format!("/sys/class/net/{}/brif", env.bridge()))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(bridge_ports, 0, "no veth left on the bridge");
}
