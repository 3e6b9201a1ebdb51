//! PullImage under load and under deadlines: concurrent calls for one image share
//! one download per blob, and a call whose deadline passes answers DeadlineExceeded
//! while the pull it started goes on for the retry to find.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use berth_proto::cri::v1::PullImageRequest;
use berth_testkit::images::{image, layer, noise, Image, OCI_MANIFEST};
use berth_testkit::servers::{Proxied, Proxy};
use berth_testkit::{host_arch, names};
use tonic::Code;

use crate::{list, pull, spec, status, Home};

/// A base layer big enough to trickle through a slowed proxy, and a small one.
fn two_layer_image(seed: u64) -> Image {
    image(
        vec![
            layer(&[("base.bin", &noise(256 * 1024, seed))]),
            layer(&[("top", b"top")]),
        ],
        host_arch(),
        &["x"],
        OCI_MANIFEST,
    )
}

/// Every blob of `img` (config and layers) was fetched exactly once.
fn assert_each_blob_fetched_once(proxy: &Proxy, img: &Image) {
    let digests = std::iter::once(&img.config_digest).chain(img.layers.iter().map(|l| &l.digest));
    for digest in digests {
        assert_eq!(
            proxy.blob_gets(digest),
            1,
            "{digest} fetched other than once: {:?}",
            proxy.requests()
        );
    }
}

/// Waits until the proxy has seen a GET of blob `digest`.
async fn wait_for_blob_get(proxy: &Proxy, digest: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.blob_gets(digest) == 0 {
        if Instant::now() > deadline {
            bail!("{digest} never fetched: {:?}", proxy.requests());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_through_the_socket_fetch_each_blob_once() -> Result<()> {
    let img = two_layer_image(41);
    // About 0.6 s for the base layer: the later calls arrive while it downloads.
    let served = Proxied::start("many/app", "1", &img, 20).await;
    let (proxy, reference) = (&served.proxy, &served.reference);
    let home = Home::insecure(&[&proxy.addr])?;
    let berth = home.start().await?;

    let mut first_client = berth.images().await?;
    let r = reference.clone();
    let first = tokio::spawn(async move { pull(&mut first_client, &r).await });
    wait_for_blob_get(proxy, &img.layers[0].digest).await?;
    let mut later = Vec::new();
    for _ in 0..3 {
        // Each call on a connection of its own, as separate kubelet workers would.
        let mut client = berth.images().await?;
        let r = reference.clone();
        later.push(tokio::spawn(async move { pull(&mut client, &r).await }));
    }
    let mut ids = vec![first.await??];
    for call in later {
        ids.push(call.await??);
    }
    assert_eq!(ids, vec![img.config_digest.clone(); 4]);
    assert_each_blob_fetched_once(proxy, &img);
    // One manifest fetch: the later calls joined the first pull rather than starting
    // their own after it.
    let manifest_gets = proxy
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET ") && r.contains("/manifests/"))
        .count();
    assert_eq!(manifest_gets, 1, "{:?}", proxy.requests());

    let mut images = berth.images().await?;
    assert_eq!(list(&mut images, None).await?, [img.config_digest.as_str()]);
    let root = home.images_root();
    assert_eq!(names(&root.join("layers")).len(), 2);
    assert!(
        names(&root.join("tmp")).is_empty(),
        "{:?}",
        names(&root.join("tmp"))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_past_its_deadline_is_deadline_exceeded_and_a_retry_succeeds() -> Result<()> {
    let img = two_layer_image(42);
    let served = Proxied::start("slow/app", "1", &img, 10).await;
    let (proxy, reference) = (&served.proxy, &served.reference);
    let home = Home::insecure(&[&proxy.addr])?;
    let berth = home.start().await?;

    let mut bare = berth.images_without_client_deadlines().await?;
    let mut request = tonic::Request::new(PullImageRequest {
        image: spec(reference),
        ..PullImageRequest::default()
    });
    request.set_timeout(Duration::from_millis(1));
    let started = Instant::now();
    let answer = bare.pull_image(request).await;
    let expired = answer.expect_err("a pull within 1 ms");
    assert_eq!(expired.code(), Code::DeadlineExceeded, "{expired:?}");
    assert!(expired.message().contains("PullImage"), "{expired:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the answer took {:?}",
        started.elapsed()
    );

    // Logged once, as a refused call, like any other failure.
    let log = berth.stderr();
    let logged = log
        .lines()
        .filter(|l| l.contains("DeadlineExceeded") && l.contains("PullImage"))
        .count();
    assert_eq!(logged, 1, "{log}");
    // berth serves on, on that connection and on others.
    bare.image_fs_info(berth_proto::cri::v1::ImageFsInfoRequest {})
        .await?;
    let mut images = berth.images().await?;
    let id = pull(&mut images, reference).await?;
    assert_eq!(id, img.config_digest);
    let found = status(&mut images, reference).await?.map(|i| i.id);
    assert_eq!(found, Some(img.config_digest.clone()));
    // The retry joined (or found) the pull the expired call started.
    assert_each_blob_fetched_once(proxy, &img);
    Ok(())
}
