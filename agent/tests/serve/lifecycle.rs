//! Lifecycle of the `berth` process: the socket, the lock, signals, config errors,
//! logging, and the verbs berth answers without a registry.

use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use berth_proto::cri::v1::*;
use nix::sys::signal::Signal;
use tonic::Code;

use crate::{run_to_exit, Home};

#[tokio::test]
async fn answers_version_status_and_runtime_config() -> Result<()> {
    let home = Home::new("")?;
    let berth = home.start().await?;
    let mut client = berth.runtime().await?;

    let version = client
        .version(VersionRequest::default())
        .await?
        .into_inner();
    assert_eq!(version.version, "0.1.0");
    assert_eq!(version.runtime_name, "berth");
    assert_eq!(version.runtime_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(version.runtime_api_version, "v1");

    let status = client
        .status(StatusRequest { verbose: true })
        .await?
        .into_inner();
    let conditions = status.status.context("no status")?.conditions;
    let condition = |kind: &str| conditions.iter().find(|c| c.r#type == kind).cloned();
    // The test's CNI conf dir starts empty: berth writes its default bridge network
    // there, and Debian's plugins (hack/install-deps) make it ready.
    let network = condition("NetworkReady").context("no NetworkReady")?;
    assert!(network.status, "{network:?}");
    assert!(home.dir.path().join("cni/10-berth.conflist").is_file());
    // RuntimeReady must tell the truth: it is true exactly when the runtime answers.
    let runtime_ready = condition("RuntimeReady").context("no RuntimeReady")?;
    let fs_info = berth
        .images()
        .await?
        .image_fs_info(ImageFsInfoRequest {})
        .await;
    assert_eq!(runtime_ready.status, fs_info.is_ok(), "{runtime_ready:?}");
    if !runtime_ready.status {
        assert!(!runtime_ready.reason.is_empty() && !runtime_ready.message.is_empty());
    }
    let handlers: Vec<_> = status
        .runtime_handlers
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    // The default handler, and youki under its own name (backends.youki.handler).
    assert_eq!(handlers, ["", "youki"]);
    let config: serde_json::Value = serde_json::from_str(&status.info["config"])?;
    assert_eq!(config["socket"], home.socket().display().to_string());
    assert_eq!(config["node_id"], "test-node");

    let runtime_config = client
        .runtime_config(RuntimeConfigRequest::default())
        .await?
        .into_inner();
    assert_eq!(
        runtime_config.linux.context("no linux")?.cgroup_driver(),
        CgroupDriver::Cgroupfs
    );
    Ok(())
}

#[tokio::test]
async fn the_socket_is_private_and_its_directory_created() -> Result<()> {
    let home = Home::new("")?;
    let _berth = home.start().await?;
    let meta = fs::metadata(home.socket())?;
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let dir = fs::metadata(home.socket().parent().context("no parent")?)?;
    assert_eq!(dir.permissions().mode() & 0o777, 0o755);
    let state = fs::metadata(home.dir.path().join("state"))?;
    // Traversable, not listable: a user-namespaced container's root reaches its rootfs.
    assert_eq!(state.permissions().mode() & 0o777, 0o711);
    assert!(home.dir.path().join("state/state.redb").is_file());
    Ok(())
}

#[tokio::test]
async fn a_second_berth_on_the_same_socket_is_refused() -> Result<()> {
    let home = Home::new("")?;
    let berth = home.start().await?;
    let (status, stderr) = run_to_exit(&home, "second").await?;
    assert!(!status.success());
    let lock = format!("{}.lock", home.socket().display());
    assert!(
        stderr.contains("another berth is already running"),
        "{stderr}"
    );
    assert!(stderr.contains(&lock), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    // The first one is unharmed.
    berth
        .runtime()
        .await?
        .version(VersionRequest::default())
        .await?;
    assert!(home.socket().exists());
    Ok(())
}

#[tokio::test]
async fn sigterm_stops_cleanly_and_removes_the_socket() -> Result<()> {
    let home = Home::new("")?;
    let mut berth = home.start().await?;
    // An open, idle client connection must not hold the shutdown up.
    let mut client = berth.runtime().await?;
    client.version(VersionRequest::default()).await?;
    berth.signal(Signal::SIGTERM)?;
    let status = berth.wait(Duration::from_secs(8)).await?;
    assert!(status.success(), "{status}: {}", berth.stderr());
    assert!(!home.socket().exists());
    assert!(berth.stderr().contains("SIGTERM"), "{}", berth.stderr());
    // And it starts again on the same socket and state.
    let mut again = home.start().await?;
    again.signal(Signal::SIGINT)?;
    assert!(again.wait(Duration::from_secs(8)).await?.success());
    assert!(!home.socket().exists());
    Ok(())
}

/// A client that connects and then never speaks holds the shutdown up for at most the
/// grace period (10 s).
#[tokio::test]
async fn a_silent_client_does_not_hold_shutdown_beyond_the_grace_period() -> Result<()> {
    let home = Home::new("")?;
    let mut berth = home.start().await?;
    let _silent = std::os::unix::net::UnixStream::connect(home.socket())?;
    let start = Instant::now();
    berth.signal(Signal::SIGTERM)?;
    let status = berth.wait(Duration::from_secs(15)).await?;
    assert!(status.success(), "{status}: {}", berth.stderr());
    assert!(start.elapsed() < Duration::from_secs(14));
    assert!(!home.socket().exists());
    Ok(())
}

#[tokio::test]
async fn a_stale_socket_is_replaced() -> Result<()> {
    let home = Home::new("")?;
    fs::create_dir_all(home.socket().parent().context("no parent")?)?;
    drop(std::os::unix::net::UnixListener::bind(home.socket())?);
    assert!(home.socket().exists());
    let berth = home.start().await?;
    berth
        .runtime()
        .await?
        .version(VersionRequest::default())
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_socket_served_by_someone_else_is_refused() -> Result<()> {
    let home = Home::new("")?;
    fs::create_dir_all(home.socket().parent().context("no parent")?)?;
    let _other = std::os::unix::net::UnixListener::bind(home.socket())?;
    let (status, stderr) = run_to_exit(&home, "berth").await?;
    assert!(!status.success());
    assert!(
        stderr.contains("already served by another process"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&home.socket().display().to_string()),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn an_unknown_config_field_is_named() -> Result<()> {
    let home = Home::new("registries:\n  mirrorz: {}\n")?;
    let (status, stderr) = run_to_exit(&home, "berth").await?;
    assert!(!status.success());
    assert!(stderr.contains("unknown field `mirrorz`"), "{stderr}");
    assert!(stderr.contains("registries"), "{stderr}");
    assert!(
        stderr.contains(&home.config().display().to_string()),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(!home.socket().exists());
    Ok(())
}

#[tokio::test]
async fn an_empty_image_is_an_invalid_argument() -> Result<()> {
    let home = Home::new("")?;
    let berth = home.start().await?;
    let mut images = berth.images().await?;
    let status = images
        .pull_image(PullImageRequest::default())
        .await
        .expect_err("pulled nothing");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().starts_with("PullImage:"), "{status:?}");
    Ok(())
}

/// Makes one call that fails whatever the backend (RunPodSandbox without a config)
/// and one ImageStatus, stops berth, and returns its stderr and the ImageStatus result.
async fn failing_calls_then_stop(home: &Home) -> Result<(String, bool)> {
    let mut berth = home.start().await?;
    let pod = berth
        .runtime()
        .await?
        .run_pod_sandbox(RunPodSandboxRequest::default())
        .await;
    assert!(pod.is_err());
    let image = berth
        .images()
        .await?
        .image_status(ImageStatusRequest {
            image: Some(ImageSpec {
                image: "docker.io/library/busybox:1.36".into(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await;
    berth.signal(Signal::SIGTERM)?;
    berth.wait(Duration::from_secs(8)).await?;
    Ok((berth.stderr(), image.is_ok()))
}

/// With `log.format: json` every line is JSON, and a failed call is logged once, in
/// the call's span with the method and the image it named.
#[tokio::test]
async fn json_logs_carry_the_call_span_and_log_a_failure_once() -> Result<()> {
    let home = Home::new("  format: json\n")?;
    let (stderr, image_ok) = failing_calls_then_stop(&home).await?;
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .with_context(|| format!("not JSON lines: {stderr}"))?;
    let failures = |method: &str| -> Vec<&serde_json::Value> {
        lines
            .iter()
            .filter(|l| l["span"]["rpc.method"] == method && l["fields"].get("grpc.code").is_some())
            .collect()
    };
    let pod = failures("RunPodSandbox");
    assert_eq!(pod.len(), 1, "{stderr}");
    assert_eq!(pod[0]["span"]["rpc.service"], "runtime.v1.RuntimeService");
    assert_eq!(pod[0]["span"]["otel.status_code"], "ERROR");
    assert!(pod[0]["fields"]["grpc.message"]
        .as_str()
        .is_some_and(|m| m.contains("RunPodSandbox")));
    let image = failures("ImageStatus");
    if image_ok {
        assert!(image.is_empty(), "{image:?}");
    } else {
        assert_eq!(image.len(), 1, "{stderr}");
        assert_eq!(image[0]["span"]["image"], "docker.io/library/busybox:1.36");
        assert_eq!(image[0]["span"]["rpc.service"], "runtime.v1.ImageService");
    }
    Ok(())
}

/// Text logs show the same span fields, and the failure once.
#[tokio::test]
async fn text_logs_name_the_method_of_a_failed_call() -> Result<()> {
    let home = Home::new("")?;
    let (stderr, _) = failing_calls_then_stop(&home).await?;
    let failures: Vec<_> = stderr
        .lines()
        .filter(|l| l.contains("rpc.method=\"RunPodSandbox\"") && l.contains("grpc.code"))
        .collect();
    assert_eq!(failures.len(), 1, "{stderr}");
    Ok(())
}
