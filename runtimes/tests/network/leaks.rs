//! Many pods at once: 20 concurrent attaches, then 20 concurrent detaches, and the
//! host is back to where it was.

use std::collections::HashSet;

use futures::future::join_all;
use runtimes::network::NsKind;

use crate::{free_ports, pod, Env};

const PODS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_pods_leave_nothing_behind() {
    let env = Env::default_network();
    let before = env.snapshot();
    let ports = free_ports(PODS);
    let pods: Vec<_> = (0..PODS)
        .map(|i| {
            (
                env.key(&format!("p{i}")),
                pod(&format!("p{i}"), ports[i], 80),
            )
        })
        .collect();

    let attached = join_all(pods.iter().map(|(key, pod)| {
        let net = &env.net;
        async move {
            let netns = net.pin(NsKind::Net, key)?;
            net.attach(key, &netns, pod).await
        }
    }))
    .await;
    let ips: Vec<String> = attached
        .into_iter()
        .map(|a| a.unwrap().ips[0].clone())
        .collect();
    assert_eq!(
        ips.iter().collect::<HashSet<_>>().len(),
        PODS,
        "distinct IPs: {ips:?}"
    );
    assert!(ips.iter().all(|ip| ip.starts_with(&env.prefix)), "{ips:?}");
    assert_eq!(env.bridge_ports().len(), PODS);
    assert_eq!(env.allocations().len(), PODS);
    assert_eq!(env.pin_mounts().len(), PODS);
    assert_eq!(env.cached().len(), PODS);

    let detached = join_all(pods.iter().map(|(key, pod)| {
        let net = &env.net;
        async move {
            net.detach(key, None, pod).await?;
            net.unpin(NsKind::Net, key)
        }
    }))
    .await;
    for r in detached {
        r.unwrap();
    }
    assert_eq!(env.snapshot(), before);
}
