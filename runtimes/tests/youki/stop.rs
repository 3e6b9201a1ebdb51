//! StopContainer: the stop signal first, SIGKILL after the timeout, at once for 0.

use std::time::{Duration, Instant};

use runtimes::types::{ContainerState, NamespaceMode};
use runtimes::Runtime;

use crate::{container, log_text, remove_all, sandbox, wait_status, Env};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_signals_then_kills() {
    let env = Env::new().await;
    let (rt, image) = env.open().await;
    let pod = env.pod_id("stop");
    rt.run_pod_sandbox(&pod, &sandbox("stop", NamespaceMode::Node))
        .await
        .unwrap();

    // busybox httpd as PID 1 has no SIGTERM handler: the kernel drops the signal.
    let stubborn = pod.with_role("stubborn").unwrap();
    rt.create_container(
        &pod,
        &stubborn,
        &container(&image, &["httpd", "-f", "-p", "127.0.0.1:0"], None),
    )
    .await
    .unwrap();
    // A shell that exits 42 on SIGTERM, and one that exits 43 on its stop signal.
    let polite = pod.with_role("polite").unwrap();
    let log = env.root.join("polite.log");
    let script = "trap 'exit 42' TERM; echo ready; while true; do sleep 0.1; done";
    rt.create_container(
        &pod,
        &polite,
        &container(&image, &["sh", "-c", script], Some(log.clone())),
    )
    .await
    .unwrap();
    let custom = pod.with_role("custom").unwrap();
    let log2 = env.root.join("custom.log");
    let script = "trap 'exit 43' USR1; echo ready; while true; do sleep 0.1; done";
    let mut spec = container(&image, &["sh", "-c", script], Some(log2.clone()));
    spec.stop_signal = Some("SIGUSR1".into());
    rt.create_container(&pod, &custom, &spec).await.unwrap();
    let quick = pod.with_role("quick").unwrap();
    rt.create_container(&pod, &quick, &container(&image, &["sleep", "1000"], None))
        .await
        .unwrap();
    for id in [&stubborn, &polite, &custom, &quick] {
        rt.start_container(id).await.unwrap();
    }
    for l in [&log, &log2] {
        wait_status(&rt, &polite, Duration::from_secs(10), |_| {
            log_text(l).contains("ready")
        })
        .await;
    }

    let t = Instant::now();
    rt.stop_container(&polite, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(rt.container_status(&polite).await.unwrap().exit_code, 42);

    rt.stop_container(&custom, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(rt.container_status(&custom).await.unwrap().exit_code, 43);

    let t = Instant::now();
    rt.stop_container(&stubborn, Duration::from_secs(2))
        .await
        .unwrap();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "{took:?}"
    );
    let status = rt.container_status(&stubborn).await.unwrap();
    assert_eq!(
        (status.state, status.exit_code),
        (ContainerState::Exited, 137)
    );

    let t = Instant::now();
    rt.stop_container(&quick, Duration::ZERO).await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(rt.container_status(&quick).await.unwrap().exit_code, 137);

    // A container that was never started is killed at once, whatever the timeout.
    let never = pod.with_role("never").unwrap();
    rt.create_container(&pod, &never, &container(&image, &["sleep", "1000"], None))
        .await
        .unwrap();
    let t = Instant::now();
    rt.stop_container(&never, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let status = rt.container_status(&never).await.unwrap();
    assert_eq!(
        (status.state, status.exit_code),
        (ContainerState::Exited, 137)
    );

    // Stopping again is fine.
    rt.stop_container(&quick, Duration::ZERO).await.unwrap();
    remove_all(&env, &rt, &[&pod]).await;
}
