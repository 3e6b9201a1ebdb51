//! A pod attached to the default network: an address from the subnet inside its
//! namespace, reachable on the pod IP and through a hostPort on 127.0.0.1, counters, and
//! nothing left after detach and unpin.

use std::net::{IpAddr, SocketAddr};

use runtimes::network::NsKind;

use crate::{dnat_chains, fetch, free_ports, pod, run, serve_in, Env};

#[tokio::test]
async fn attached_pod_answers_on_its_ip_and_host_port_and_leaves_nothing() {
    let env = Env::default_network();
    assert_eq!(
        env.net.status(),
        Ok(()),
        "default config + Debian plugins are ready"
    );
    let before = env.snapshot();
    let key = env.key("web");
    let host_port = free_ports(1)[0];
    let pod = pod("web", host_port, 8080);

    let netns = env.net.pin(NsKind::Net, &key).unwrap();
    let att = env.net.attach(&key, &netns, &pod).await.unwrap();
    assert_eq!(att.interface, "eth0");
    assert_eq!(att.ips.len(), 1, "{att:?}");
    let ip = att.ips[0].clone();
    assert!(
        ip.starts_with(&env.prefix),
        "{ip} not in {}0.0/16",
        env.prefix
    );

    // Inside the namespace, eth0 carries that address and lo is up.
    let pin = format!("--net={}", netns.display());
    let addrs = run("nsenter", &[&pin, "ip", "-o", "-4", "addr", "show"]);
    let addrs = addrs.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(addrs.contains(&format!("eth0 inet {ip}/16")), "{addrs}");
    assert!(addrs.contains("lo inet 127.0.0.1/8"), "{addrs}");
    assert_eq!(env.bridge_ports().len(), 1);
    assert_eq!(env.allocations(), vec![ip.clone()]);
    let rules = env.nat_rules();
    let chains = dnat_chains(&rules);
    assert_eq!(chains.len(), 1, "one DNAT chain for the pod: {rules:#?}");

    // The pod IP and the hostPort on 127.0.0.1 both reach the server in the namespace.
    let server = serve_in(&netns, 8080, "hello from the pod", 2);
    let pod_ip: IpAddr = ip.parse().unwrap();
    assert_eq!(
        fetch(SocketAddr::new(pod_ip, 8080)).unwrap(),
        "hello from the pod"
    );
    let local: SocketAddr = ([127, 0, 0, 1], host_port).into();
    assert_eq!(fetch(local).unwrap(), "hello from the pod");
    server.join().unwrap();

    let stats = env.net.interface_stats(&netns, "eth0").unwrap();
    assert_eq!(stats.interface, "eth0");
    assert!(stats.rx_bytes > 0 && stats.tx_bytes > 0, "{stats:?}");
    assert!(env
        .net
        .interface_stats(&netns, "eth9")
        .unwrap_err()
        .is_not_found());

    env.net.detach(&key, Some(&netns), &pod).await.unwrap();
    env.net.unpin(NsKind::Net, &key).unwrap();
    assert_eq!(env.snapshot(), before);
    let all_rules = run("iptables", &["-w", "-t", "nat", "-S"]);
    assert!(
        !all_rules.contains(&chains[0]),
        "{} left: {all_rules}",
        chains[0]
    );
    assert!(
        !all_rules.contains(&format!("{ip}:")),
        "{ip} left: {all_rules}"
    );
    assert!(fetch(local).is_err(), "the hostPort is gone");

    // Both are idempotent.
    env.net.detach(&key, Some(&netns), &pod).await.unwrap();
    env.net.unpin(NsKind::Net, &key).unwrap();
    assert_eq!(env.snapshot(), before);
}

#[tokio::test]
async fn attach_twice_returns_the_same_address() {
    let env = Env::default_network();
    let key = env.key("again");
    let pod = pod("again", 0, 80);
    let netns = env.net.pin(NsKind::Net, &key).unwrap();
    let first = env.net.attach(&key, &netns, &pod).await.unwrap();
    let second = env.net.attach(&key, &netns, &pod).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(env.allocations().len(), 1);
    assert_eq!(env.bridge_ports().len(), 1);
    env.net.detach(&key, None, &pod).await.unwrap();
    env.net.unpin(NsKind::Net, &key).unwrap();
    assert!(env.allocations().is_empty() && env.bridge_ports().is_empty());
}

/// `net.ipv4.ip_forward` is per network namespace: run the plugins from a thread inside
/// a fresh "node" namespace with forwarding turned off, and see the bridge plugin (a
/// gateway) turn it on. This is why berth does not set it itself.
#[test]
fn the_bridge_plugin_turns_on_forwarding() {
    let env = Env::default_network();
    let node = env.net.pin(NsKind::Net, &env.key("node")).unwrap();
    let key = env.key("fwd");
    let pod = pod("fwd", 0, 80);
    std::thread::scope(|s| {
        s.spawn(|| {
            let ns = std::fs::File::open(&node).unwrap();
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            // /proc/sys/net shows the reading thread's namespace: only lo is here.
            let mut confs: Vec<_> = std::fs::read_dir("/proc/sys/net/ipv4/conf")
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            confs.sort();
            assert_eq!(confs, ["all", "default", "lo"], "inside the node namespace");
            // New namespaces inherit the host's IPv4 settings; this one is ours to change.
            let sysctl = "/proc/sys/net/ipv4/ip_forward";
            std::fs::write(sysctl, "0").unwrap();
            let forwarding = || std::fs::read_to_string(sysctl).unwrap();
            assert_eq!(forwarding().trim(), "0");
            // Plugins are children of this thread, so they run in the node namespace.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let netns = env.net.pin(NsKind::Net, &key).unwrap();
            rt.block_on(env.net.attach(&key, &netns, &pod)).unwrap();
            assert_eq!(forwarding().trim(), "1");
            rt.block_on(env.net.detach(&key, None, &pod)).unwrap();
            env.net.unpin(NsKind::Net, &key).unwrap();
        })
        .join()
        .unwrap();
    });
    assert!(
        !std::path::Path::new("/sys/class/net")
            .join(&env.bridge)
            .exists(),
        "the bridge was made in the node namespace, not the host's"
    );
    env.net.unpin(NsKind::Net, &env.key("node")).unwrap();
}
