//! A berth killed with SIGKILL in the middle of a pull: after a restart on the same
//! state dir the image is absent (it never finished arriving), nothing of the killed
//! pull is left on disk, and a new pull completes with the right content.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use berth_testkit::images::{image, layer, noise, Image, OCI_MANIFEST};
use berth_testkit::servers::{Proxied, Proxy};
use berth_testkit::{assert_empty, host_arch, names};

use crate::{list, pull, status, Home};

const BIG: usize = 1 << 20;

/// A small layer that lands quickly, then two big ones that trickle.
fn crash_image() -> Image {
    image(
        vec![
            layer(&[("etc/small", b"small")]),
            layer(&[("big1.bin", &noise(BIG, 31))]),
            layer(&[("big2.bin", &noise(BIG, 32))]),
        ],
        host_arch(),
        &["x"],
        OCI_MANIFEST,
    )
}

/// What each layer directory must hold, bottom first.
fn expected_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("etc/small", b"small".to_vec()),
        ("big1.bin", noise(BIG, 31)),
        ("big2.bin", noise(BIG, 32)),
    ]
}

/// Waits until the pull is well under way: a layer is unpacked into `layers/`, a big
/// layer streaming into its unpack in `tmp/` has written part of its file, and the
/// proxy has passed on part of a big blob.
async fn wait_until_mid_pull(root: &Path, proxy: &Proxy) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let unpacked = !names(&root.join("layers")).is_empty();
        let downloading = names(&root.join("tmp")).iter().any(|n| {
            let dir = root.join("tmp").join(n);
            n.starts_with("unpack-")
                && ["big1.bin", "big2.bin"]
                    .iter()
                    .any(|f| std::fs::metadata(dir.join(f)).is_ok_and(|m| m.len() > 0))
        });
        if unpacked && downloading && proxy.blob_bytes() > 64 * 1024 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the pull did not get under way: layers {:?}, tmp {:?}, {} blob bytes, requests {:?}",
                names(&root.join("layers")),
                names(&root.join("tmp")),
                proxy.blob_bytes(),
                proxy.requests()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_berth_killed_mid_pull_restarts_clean_and_pulls_again() -> Result<()> {
    let img = crash_image();
    // 20 ms per 8 KiB: each big layer takes about 2.5 s to arrive.
    let served = Proxied::start("crash/app", "1", &img, 20).await;
    let (proxy, reference) = (&served.proxy, &served.reference);
    let home = Home::insecure(&[&proxy.addr])?;
    let root = home.images_root();

    let mut berth = home.start().await?;
    let mut client = berth.images().await?;
    let r = reference.clone();
    let pulling = tokio::spawn(async move { pull(&mut client, &r).await });
    wait_until_mid_pull(&root, proxy).await?;
    berth.kill9().await?;
    let answer = tokio::time::timeout(Duration::from_secs(30), pulling).await??;
    assert!(answer.is_err(), "the killed pull answered {answer:?}");

    // The kill landed mid-pull: only part of the image's blobs had been sent.
    let all_blobs: usize =
        img.config.len() + img.layers.iter().map(|l| l.blob.len()).sum::<usize>();
    let served = proxy.blob_bytes();
    assert!(
        served > 0 && served < all_blobs as u64 / 2,
        "{served} of {all_blobs} blob bytes served before the kill"
    );
    // And it left work in progress behind for the restart to deal with.
    assert!(
        names(&root.join("tmp"))
            .iter()
            .any(|n| n.starts_with("unpack-")),
        "no partial unpack left: {:?}",
        names(&root.join("tmp"))
    );
    assert!(!names(&root.join("layers")).is_empty());

    proxy.delay_ms.store(0, Ordering::Relaxed);
    let berth = home.start_as("berth-restarted").await?;
    let mut images = berth.images().await?;
    // Killed before all its bytes arrived, the image cannot be complete: it must be
    // absent, by every name, with nothing of it kept.
    assert_eq!(status(&mut images, reference).await?, None);
    assert_eq!(status(&mut images, &img.config_digest).await?, None);
    assert!(list(&mut images, None).await?.is_empty());
    assert_empty(&root);

    let before = proxy.requests().len();
    let id = pull(&mut images, reference).await?;
    assert_eq!(id, img.config_digest);
    assert!(
        proxy.requests().len() > before,
        "the new pull went to the registry"
    );
    let image = status(&mut images, reference).await?;
    assert_eq!(image.map(|i| i.id), Some(img.config_digest.clone()));
    assert_eq!(list(&mut images, None).await?, [img.config_digest.as_str()]);
    assert_layers_complete(&root, &img);
    assert!(
        names(&root.join("tmp")).is_empty(),
        "{:?}",
        names(&root.join("tmp"))
    );
    Ok(())
}

/// `layers/` holds exactly the image's layers, by chain id, each with its file.
fn assert_layers_complete(root: &Path, img: &Image) {
    let chain_ids = img.chain_ids();
    let mut expected: Vec<String> = chain_ids
        .iter()
        .map(|c| c.trim_start_matches("sha256:").to_string())
        .collect();
    expected.sort();
    assert_eq!(names(&root.join("layers")), expected);
    for (chain_id, (file, content)) in chain_ids.iter().zip(expected_files()) {
        let dir = root
            .join("layers")
            .join(chain_id.trim_start_matches("sha256:"));
        let found = std::fs::read(dir.join(file)).unwrap_or_default();
        assert!(
            found == content,
            "{}/{file}: {} bytes, expected {}",
            dir.display(),
            found.len(),
            content.len()
        );
    }
}
