//! CRI log files: what a container writes to stdout and stderr lands at the path
//! kubelet gave (`<log_directory>/<log_path>`) as `<RFC3339Nano> <stream> <P|F> <text>`
//! records: a complete line is one `F` record, a long line is cut into `P` records
//! ending in an `F`, and output that ends without a newline is a final `P`. After the
//! file is moved away (kubelet's rotation), ReopenContainerLog makes the writer go on in
//! a new file at the path, losing nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use berth_proto::cri::v1::*;

use crate::world::{create_and_start, remove_all_pods, run_pod, wait_exited, World};

/// The longest text of one record (containerd's `max_container_log_line_size`).
const MAX_RECORD: usize = 16 * 1024;

/// One record of a CRI log file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    /// Nanoseconds since the epoch.
    time: i64,
    stream: String,
    tag: String,
    text: String,
}

/// The records of the log at `path`; every line must be a well-formed record.
fn records(path: &Path) -> Result<Vec<Record>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    text.split_inclusive('\n')
        .map(|line| {
            let body = line
                .strip_suffix('\n')
                .with_context(|| format!("a record without its newline: {line:?}"))?;
            let mut fields = body.splitn(4, ' ');
            let mut next = || fields.next().context("a short record");
            let (time, stream, tag, text) = (next()?, next()?, next()?, next()?);
            // RFC 3339 with nanoseconds, in UTC, as kubelet parses it.
            let parsed = chrono::DateTime::parse_from_rfc3339(time)
                .with_context(|| format!("timestamp of {line:?}"))?;
            anyhow::ensure!(
                time.len() == "2006-01-02T15:04:05.000000000Z".len() && time.ends_with('Z'),
                "not RFC3339Nano in UTC: {time}"
            );
            anyhow::ensure!(matches!(stream, "stdout" | "stderr"), "stream {stream:?}");
            anyhow::ensure!(matches!(tag, "P" | "F"), "tag {tag:?}");
            Ok(Record {
                time: parsed.timestamp_nanos_opt().context("time out of range")?,
                stream: stream.into(),
                tag: tag.into(),
                text: text.into(),
            })
        })
        .collect()
}

/// (tag, text) of the records of `stream`, in order.
fn of(records: &[Record], stream: &str) -> Vec<(String, String)> {
    records
        .iter()
        .filter(|r| r.stream == stream)
        .map(|r| (r.tag.clone(), r.text.clone()))
        .collect()
}

fn tagged(tag: &str, text: &str) -> (String, String) {
    (tag.to_string(), text.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_output_becomes_cri_log_records() -> Result<()> {
    let world = World::new().await?;
    let berth = world.start().await?;
    let mut client = berth.runtime().await?;
    let pod_config = world.pod("logs", &[]);
    let pod = run_pod(&mut client, &pod_config).await?;
    // A line of 40000 bytes: two full partial records and the rest.
    let script = "printf 'out one\\nout two\\n'; printf 'err one\\n' >&2; \
                  head -c 40000 /dev/zero | tr '\\0' x; echo; \
                  printf 'err tail' >&2; printf 'out tail'";
    let writer = world.container("writer", &["sh", "-c", script]);
    let id = create_and_start(&mut client, &pod, &pod_config, &writer).await?;
    let status = wait_exited(&mut client, &id, Duration::from_secs(20)).await?;
    assert_eq!(status.exit_code, 0, "{status:?}");
    let path = world.log_dir("logs").join("writer.log");
    assert_eq!(status.log_path, path.display().to_string());

    let all = records(&path)?;
    let long = 40000 - 2 * MAX_RECORD;
    assert_eq!(
        of(&all, "stdout"),
        [
            tagged("F", "out one"),
            tagged("F", "out two"),
            tagged("P", &"x".repeat(MAX_RECORD)),
            tagged("P", &"x".repeat(MAX_RECORD)),
            tagged("F", &"x".repeat(long)),
            tagged("P", "out tail"),
        ]
    );
    assert_eq!(
        of(&all, "stderr"),
        [tagged("F", "err one"), tagged("P", "err tail")]
    );
    // Each stream's records are in time order, between the start and the finish.
    for stream in ["stdout", "stderr"] {
        let times: Vec<i64> = all
            .iter()
            .filter(|r| r.stream == stream)
            .map(|r| r.time)
            .collect();
        assert!(
            times.windows(2).all(|w| w[0] <= w[1]),
            "{stream}: {times:?}"
        );
        assert!(times
            .iter()
            .all(|t| *t >= status.started_at - 1_000_000_000));
        assert!(times
            .iter()
            .all(|t| *t <= status.finished_at + 1_000_000_000));
    }
    remove_all_pods(&mut client).await?;
    Ok(())
}

/// The numbers of the `tick N` records at `path`.
fn ticks(path: &Path) -> Result<Vec<u64>> {
    records(path)?
        .iter()
        .map(|r| {
            anyhow::ensure!(
                (r.stream.as_str(), r.tag.as_str()) == ("stdout", "F"),
                "{r:?}"
            );
            let n = r.text.strip_prefix("tick ").context("not a tick")?;
            Ok(n.parse()?)
        })
        .collect()
}

/// Waits until the log at `path` holds at least `n` ticks.
async fn wait_for_ticks(path: &Path, n: usize) -> Result<Vec<u64>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // A record being written may show half: read again then.
        let found = ticks(path).unwrap_or_default();
        if found.len() >= n {
            return Ok(found);
        }
        if Instant::now() > deadline {
            bail!("{} holds {:?}, not {n} ticks", path.display(), ticks(path));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_container_log_goes_on_in_a_new_file() -> Result<()> {
    let world = World::new().await?;
    let berth = world.start().await?;
    let mut client = berth.runtime().await?;
    let pod_config = world.pod("rotate", &[]);
    let pod = run_pod(&mut client, &pod_config).await?;
    let script = "i=0; while true; do echo \"tick $i\"; i=$((i+1)); sleep 0.05; done";
    let ticker = world.container("ticker", &["sh", "-c", script]);
    let id = create_and_start(&mut client, &pod, &pod_config, &ticker).await?;
    let path = world.log_dir("rotate").join("ticker.log");
    wait_for_ticks(&path, 3).await?;

    // As kubelet rotates: move the file, then ask for a reopen.
    let rotated = path.with_extension("log.1");
    std::fs::rename(&path, &rotated)?;
    // Until the reopen the writer keeps writing to the moved file.
    let moved = ticks(&rotated)?.len();
    wait_for_ticks(&rotated, moved + 2).await?;
    assert!(!path.exists(), "a new file before the reopen");
    client
        .reopen_container_log(ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await?;
    let new = wait_for_ticks(&path, 3).await?;
    let old = ticks(&rotated)?;
    // Nothing lost, nothing twice: the old file then the new one count up by one.
    let all: Vec<u64> = old.iter().chain(&new).copied().collect();
    let expected: Vec<u64> = (0..all.len() as u64).collect();
    assert_eq!(all, expected, "old {old:?}, new {new:?}");
    assert!(!old.is_empty() && !new.is_empty());

    // Only a running container has a log to reopen.
    client
        .stop_container(StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await?;
    let status = client
        .reopen_container_log(ReopenContainerLogRequest { container_id: id })
        .await
        .expect_err("a stopped container's log reopened");
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    remove_all_pods(&mut client).await?;
    Ok(())
}
