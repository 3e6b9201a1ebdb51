//! `telemetry.metrics.address`: a scrape of `/metrics`, read by a Prometheus
//! exposition-format parser, counts the calls, pulls, pods and containers made, and
//! after real work (a pod on CNI, an exec through crictl, a failed pull) the CNI
//! plugin runs, supervisor starts, streaming sessions and pull failures.

use anyhow::{Context, Result};
use berth_proto::cri::v1::*;
use berth_testkit::servers::free_port;
use prometheus_parse::{Scrape, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::world::{create, create_and_start, run_pod, stop_and_remove_pod, World};

/// `GET path` over HTTP/1.1: the status line and the body.
async fn get(port: u16, path: &str) -> Result<(String, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    let (head, body) = answer.split_once("\r\n\r\n").context("no header end")?;
    Ok((
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    ))
}

/// `/metrics`, parsed.
async fn scrape_metrics(port: u16) -> Result<(Scrape, String)> {
    let (status, body) = get(port, "/metrics").await?;
    anyhow::ensure!(status.contains("200"), "{status}");
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .with_context(|| format!("/metrics does not parse:\n{body}"))?;
    Ok((scrape, body))
}

/// The value of the sample `name` whose labels include `labels`.
fn sample(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(f64::NAN, |b| b.count),
            Value::Summary(_) => f64::NAN,
        })
}

#[tokio::test]
async fn a_scrape_counts_calls_pulls_pods_and_containers() -> Result<()> {
    let port = free_port();
    let world = World::with_config(&format!(
        "telemetry:\n  metrics:\n    address: 127.0.0.1:{port}\n"
    ))
    .await?;
    let berth = world.start().await?;
    let mut client = berth.runtime().await?;
    let pod_config = world.pod("metered", &[]);
    let pod = run_pod(&mut client, &pod_config).await?;
    create(
        &mut client,
        &pod,
        &pod_config,
        &world.container("app", &["sleep", "60"]),
    )
    .await?;
    let missing = client
        .container_status(ContainerStatusRequest {
            container_id: "no-such-container".into(),
            verbose: false,
        })
        .await
        .expect_err("an unknown container has a status");
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let (status, body) = get(port, "/metrics").await?;
    assert!(status.contains("200"), "{status}");
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .with_context(|| format!("/metrics does not parse:\n{body}"))?;
    let calls = "berth_cri_request_duration_seconds";
    for (labels, want) in [
        ([("method", "RunPodSandbox"), ("code", "OK")], 1.0),
        ([("method", "CreateContainer"), ("code", "OK")], 1.0),
        ([("method", "ContainerStatus"), ("code", "NOT_FOUND")], 1.0),
    ] {
        assert_eq!(
            sample(&scrape, calls, &labels),
            Some(want),
            "{labels:?} in\n{body}"
        );
    }
    // World::start pulled the busybox image through berth.
    assert_eq!(
        sample(&scrape, "berth_image_pulls_total", &[("result", "ok")]),
        Some(1.0)
    );
    assert!(sample(&scrape, "berth_image_pulled_bytes_total", &[]).is_some_and(|b| b > 0.0));
    assert!(
        sample(&scrape, "berth_image_layer_downloaded_bytes_total", &[]).is_some_and(|b| b > 0.0)
    );
    assert_eq!(
        sample(&scrape, "berth_image_pulls_in_progress", &[]),
        Some(0.0)
    );
    let ready = [("state", "ready"), ("handler", ""), ("backend", "youki")];
    assert_eq!(
        sample(&scrape, "berth_pod_sandboxes", &ready),
        Some(1.0),
        "{body}"
    );
    let created = [("state", "created"), ("handler", ""), ("backend", "youki")];
    assert_eq!(
        sample(&scrape, "berth_containers", &created),
        Some(1.0),
        "{body}"
    );
    assert!(sample(&scrape, "berth_state_store_bytes", &[]).is_some_and(|b| b > 0.0));

    let (status, _) = get(port, "/").await?;
    assert!(status.contains("404"), "{status}");

    stop_and_remove_pod(&mut client, &pod).await?;
    let (_, body) = get(port, "/metrics").await?;
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_string())))?;
    assert_eq!(
        sample(&scrape, "berth_pod_sandboxes", &ready),
        None,
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn real_work_shows_in_cni_supervisor_streaming_pull_failure_and_store_families() -> Result<()>
{
    let port = free_port();
    let world = World::with_config(&format!(
        "telemetry:\n  metrics:\n    address: 127.0.0.1:{port}\n"
    ))
    .await?;
    let berth = world.start().await?;
    let mut client = berth.runtime().await?;
    let pod_config = world.pod("busy", &[]);
    let pod = run_pod(&mut client, &pod_config).await?;
    let app = create_and_start(
        &mut client,
        &pod,
        &pod_config,
        &world.container("app", &["sleep", "60"]),
    )
    .await?;
    create(
        &mut client,
        &pod,
        &pod_config,
        &world.container("idle", &["sleep", "60"]),
    )
    .await?;
    // An exec through the streaming server, as kubectl exec does.
    let crictl = berth_testkit::crictl::Crictl::new(world.home.dir.path(), &world.home.socket());
    let run = crictl.run(&["exec", &app, "echo", "streamed"], None).await;
    assert_eq!(run.code, Some(0), "crictl exec: {}", run.stderr);
    assert!(run.stdout.contains("streamed"), "{}", run.stdout);
    // A pull of an image the registry does not have.
    let missing = world.image.replace("busybox", "no-such-image");
    let failed = berth
        .images()
        .await?
        .pull_image(PullImageRequest {
            image: Some(ImageSpec {
                image: missing.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect_err("a missing image was pulled");
    assert_eq!(failed.code(), tonic::Code::NotFound, "{failed:?}");

    // The exec session ends when crictl's stream closes: wait for the gauge.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (scrape, body) = loop {
        let (scrape, body) = scrape_metrics(port).await?;
        let open = sample(&scrape, "berth_streaming_sessions", &[("kind", "exec")]);
        if open == Some(0.0) || std::time::Instant::now() > deadline {
            break (scrape, body);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let youki = ("backend", "youki");
    for (name, labels, want) in [
        ("berth_pod_sandboxes", vec![("state", "ready"), youki], 1.0),
        ("berth_containers", vec![("state", "running"), youki], 1.0),
        ("berth_containers", vec![("state", "created"), youki], 1.0),
        (
            "berth_supervisor_events_total",
            vec![("event", "started")],
            1.0,
        ),
        ("berth_streaming_sessions", vec![("kind", "exec")], 0.0),
        (
            "berth_streaming_sessions_total",
            vec![("kind", "exec")],
            1.0,
        ),
        (
            "berth_image_pull_failures_total",
            vec![("reason", "not_found")],
            1.0,
        ),
        (
            "berth_image_pulls_total",
            vec![("result", "NOT_FOUND")],
            1.0,
        ),
        (
            "berth_state_store_records",
            vec![("table", "pod_sandboxes")],
            1.0,
        ),
        (
            "berth_state_store_records",
            vec![("table", "containers")],
            2.0,
        ),
        // The default network's bridge plugin attached the pod, once.
        (
            "berth_cni_operation_duration_seconds",
            vec![("operation", "ADD"), ("plugin", "bridge"), ("result", "ok")],
            1.0,
        ),
    ] {
        assert_eq!(
            sample(&scrape, name, &labels),
            Some(want),
            "{name}{labels:?} in\n{body}"
        );
    }
    for family in [
        "berth_cni_operation_duration_seconds",
        "berth_supervisor_events_total",
        "berth_streaming_sessions",
        "berth_image_pull_failures_total",
        "berth_state_store_records",
    ] {
        assert!(
            body.contains(&format!("# HELP {family} "))
                && body.contains(&format!("# TYPE {family} ")),
            "{family} has no HELP or TYPE in\n{body}"
        );
    }
    // The whole exposition with the pod running, for `--nocapture` (the README's
    // sample comes from it).
    println!("{body}");

    stop_and_remove_pod(&mut client, &pod).await?;
    let (scrape, body) = scrape_metrics(port).await?;
    let del = [("operation", "DEL"), ("plugin", "bridge"), ("result", "ok")];
    assert!(
        sample(&scrape, "berth_cni_operation_duration_seconds", &del).is_some_and(|n| n >= 1.0),
        "no CNI DEL in\n{body}"
    );
    assert_eq!(
        sample(
            &scrape,
            "berth_state_store_records",
            &[("table", "containers")]
        ),
        Some(0.0),
        "{body}"
    );
    Ok(())
}
