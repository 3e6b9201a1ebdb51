//! `telemetry.metrics.address`: a scrape of `/metrics`, read by a Prometheus
//! exposition-format parser, counts the calls, pulls, pods and containers made.

use anyhow::{Context, Result};
use berth_proto::cri::v1::*;
use berth_testkit::servers::free_port;
use prometheus_parse::{Scrape, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::world::{create, run_pod, stop_and_remove_pod, World};

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
    let ready = [("state", "ready"), ("handler", "")];
    assert_eq!(
        sample(&scrape, "berth_pod_sandboxes", &ready),
        Some(1.0),
        "{body}"
    );
    let created = [("state", "created"), ("handler", "")];
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
