//! An HTTP server in a pod answers from the host: on the pod IP PodSandboxStatus
//! reports, and through its hostPort on 127.0.0.1 and on a non-loopback address of the
//! host. That address is the host's own on the test's bridge (the pods' gateway): a
//! local address like any other to portmap's `--dst-type LOCAL` rules, and one whose
//! traffic stays on an interface the test made.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use berth_proto::cri::v1::*;
use berth_testkit::servers::free_port;

use crate::world::{create_and_start, http_get, pod_ip, run_pod, World};

/// What busybox's httpd serves from the test image's `/www`.
const PAGE: &str = "hello from a berth pod";

fn ok(answer: &str) -> bool {
    answer.starts_with("HTTP/1.1 200 OK\r\n")
}

/// GETs `addr` until the page comes back (the server takes a moment to listen).
async fn page_at(addr: &str) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match http_get(addr).await {
            Ok(answer) if answer.contains(PAGE) => return Ok(answer),
            other if Instant::now() > deadline => bail!("{addr} did not serve the page: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_server_in_a_pod_answers_on_the_pod_ip_and_its_host_port() -> Result<()> {
    let world = World::new().await?;
    let berth = world.start().await?;
    let mut client = berth.runtime().await?;
    let before = world.host();

    let host_port = free_port();
    let pod_config = world.pod("web", &[(8080, host_port)]);
    let pod = run_pod(&mut client, &pod_config).await?;
    let ip = pod_ip(&mut client, &pod).await?;
    assert!(
        ip.starts_with(&world.prefix),
        "{ip} is not in the test's subnet"
    );
    let httpd = world.container("httpd", &["httpd", "-f", "-p", "8080", "-h", "/www"]);
    create_and_start(&mut client, &pod, &pod_config, &httpd).await?;

    let direct = page_at(&format!("{ip}:8080")).await?;
    assert!(ok(&direct), "{direct}");
    for host_ip in ["127.0.0.1".to_string(), world.gateway()] {
        let answer = page_at(&format!("{host_ip}:{host_port}")).await?;
        assert!(ok(&answer), "{host_ip}: {answer}");
    }
    client
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await?;
    // A stopped pod's address and port mapping are gone.
    for addr in [format!("{ip}:8080"), format!("127.0.0.1:{host_port}")] {
        assert!(http_get(&addr).await.is_err(), "{addr} still answers");
    }
    client
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await?;
    assert_eq!(world.host(), before);
    Ok(())
}
