//! The other image verbs over the socket, on images pulled from a real registry:
//! ListImages with a filter, ImageStatus verbose, RemoveImage by every kind of name,
//! and ImageFsInfo following what is stored.

use anyhow::{Context, Result};
use berth_proto::cri::v1::image_service_client::ImageServiceClient;
use berth_proto::cri::v1::{
    FilesystemUsage, ImageFsInfoRequest, ImageStatusRequest, RemoveImageRequest,
};
use berth_testkit::images::{
    image, layer, noise, one_file_image, push, Image, DOCKER_MANIFEST, OCI_MANIFEST,
};
use berth_testkit::servers::Registry;
use berth_testkit::{assert_empty, host_arch};
use tonic::transport::Channel;

use crate::{list, pull, spec, status, Home};

/// Pushes `a` as `verbs/a:1` and `verbs/a:2`, `b` as `verbs/b:1`, and pulls all three
/// names; returns the reference of each.
async fn pull_a_twice_and_b(
    registry: &Registry,
    images: &mut ImageServiceClient<Channel>,
    a: &Image,
    b: &Image,
) -> Result<[String; 3]> {
    push(&registry.addr, "verbs/a", "1", a).await;
    push(&registry.addr, "verbs/a", "2", a).await;
    push(&registry.addr, "verbs/b", "1", b).await;
    let names = [
        format!("{}/verbs/a:1", registry.addr),
        format!("{}/verbs/a:2", registry.addr),
        format!("{}/verbs/b:1", registry.addr),
    ];
    for name in &names {
        pull(images, name).await?;
    }
    Ok(names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_images_filters_and_image_status_describes() -> Result<()> {
    let registry = Registry::start().await;
    let (a, b) = (
        one_file_image("a", DOCKER_MANIFEST),
        one_file_image("b", OCI_MANIFEST),
    );
    let home = Home::insecure(&[&registry.addr])?;
    let berth = home.start().await?;
    let mut images = berth.images().await?;
    let [a1, a2, b1] = pull_a_twice_and_b(&registry, &mut images, &a, &b).await?;

    let mut all = list(&mut images, None).await?;
    all.sort();
    let mut expected = vec![a.config_digest.clone(), b.config_digest.clone()];
    expected.sort();
    assert_eq!(all, expected);
    let a_digest = format!("{}/verbs/a@{}", registry.addr, a.manifest_digest);
    let hex = a.config_digest.trim_start_matches("sha256:");
    for filter in [
        &a1,
        &a2,
        &a.config_digest,
        &a_digest,
        &hex[..12].to_string(),
    ] {
        assert_eq!(
            list(&mut images, Some(filter)).await?,
            [a.config_digest.as_str()],
            "filter {filter}"
        );
    }
    assert_eq!(
        list(&mut images, Some(&b1)).await?,
        [b.config_digest.as_str()]
    );
    let absent = format!("{}/verbs/a:3", registry.addr);
    assert!(list(&mut images, Some(&absent)).await?.is_empty());
    // An empty filter is no filter.
    assert_eq!(list(&mut images, Some("")).await?.len(), 2);

    let answer = images
        .image_status(ImageStatusRequest {
            image: spec(&a2),
            verbose: true,
        })
        .await?
        .into_inner();
    let image = answer.image.context("a is there")?;
    assert_eq!(image.id, a.config_digest);
    assert_eq!(image.repo_tags, [a1.clone(), a2.clone()]);
    assert_eq!(image.repo_digests, [a_digest]);
    assert_eq!(image.size, a.size());
    assert_eq!(image.uid.map(|u| u.value), Some(1000));
    assert_eq!(
        image.spec.as_ref().map(|s| s.image.as_str()),
        Some(a.config_digest.as_str())
    );
    let info: serde_json::Value = serde_json::from_str(answer.info.get("info").context("info")?)?;
    assert_eq!(info["id"], a.config_digest);
    let config = &info["imageSpec"]["config"];
    assert_eq!(info["imageSpec"]["architecture"], host_arch());
    assert_eq!(config["Cmd"], serde_json::json!(["echo", "a"]));
    assert_eq!(config["User"], "1000:1000");
    assert_eq!(config["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
    // The same image whatever name asks; not verbose: no info; absent: an empty
    // answer, not an error.
    for name in [&a1, &a.config_digest] {
        assert_eq!(
            status(&mut images, name).await?.as_ref(),
            Some(&image),
            "{name}"
        );
    }
    let quiet = images
        .image_status(ImageStatusRequest {
            image: spec(&a1),
            verbose: false,
        })
        .await?
        .into_inner();
    assert!(quiet.info.is_empty());
    assert_eq!(status(&mut images, &absent).await?, None);
    Ok(())
}

async fn remove(images: &mut ImageServiceClient<Channel>, name: &str) -> Result<()> {
    images
        .remove_image(RemoveImageRequest { image: spec(name) })
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_image_by_tag_id_and_digest_is_idempotent() -> Result<()> {
    let registry = Registry::start().await;
    let (a, b) = (
        one_file_image("a", OCI_MANIFEST),
        one_file_image("b", DOCKER_MANIFEST),
    );
    let c = one_file_image("c", OCI_MANIFEST);
    push(&registry.addr, "verbs/c", "1", &c).await;
    let home = Home::insecure(&[&registry.addr])?;
    let berth = home.start().await?;
    let mut images = berth.images().await?;
    let [a1, a2, b1] = pull_a_twice_and_b(&registry, &mut images, &a, &b).await?;
    let c1 = format!("{}/verbs/c:1", registry.addr);
    pull(&mut images, &c1).await?;
    assert_eq!(list(&mut images, None).await?.len(), 3);

    // By tag: the image goes with all its names.
    remove(&mut images, &a1).await?;
    for name in [&a1, &a2, &a.config_digest] {
        assert_eq!(status(&mut images, name).await?, None, "{name}");
    }
    remove(&mut images, &a1).await?;
    // By id.
    remove(&mut images, &b.config_digest).await?;
    assert_eq!(status(&mut images, &b1).await?, None);
    remove(&mut images, &b.config_digest).await?;
    // By repo digest.
    let c_digest = format!("{}/verbs/c@{}", registry.addr, c.manifest_digest);
    remove(&mut images, &c_digest).await?;
    assert_eq!(status(&mut images, &c1).await?, None);
    remove(&mut images, &c_digest).await?;
    // Never pulled at all.
    remove(&mut images, "docker.io/library/never:1").await?;

    assert!(list(&mut images, None).await?.is_empty());
    assert_empty(&home.images_root());
    // Removed images pull again.
    assert_eq!(pull(&mut images, &a2).await?, a.config_digest);
    Ok(())
}

async fn fs_usage(images: &mut ImageServiceClient<Channel>) -> Result<FilesystemUsage> {
    let answer = images
        .image_fs_info(ImageFsInfoRequest {})
        .await?
        .into_inner();
    assert_eq!(answer.image_filesystems.len(), 1, "{answer:?}");
    Ok(answer.image_filesystems[0].clone())
}

fn bytes_and_inodes(usage: &FilesystemUsage) -> (u64, u64) {
    (
        usage.used_bytes.map(|v| v.value).unwrap_or_default(),
        usage.inodes_used.map(|v| v.value).unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_fs_info_follows_pulls_and_removals() -> Result<()> {
    const FILE: usize = 512 * 1024;
    let registry = Registry::start().await;
    let files: Vec<(String, Vec<u8>)> = (0..8)
        .map(|i| (format!("data/{i}.bin"), noise(FILE / 8, 50 + i)))
        .collect();
    let entries: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let img = image(vec![layer(&entries)], host_arch(), &["x"], OCI_MANIFEST);
    push(&registry.addr, "fs/app", "1", &img).await;
    let home = Home::insecure(&[&registry.addr])?;
    let berth = home.start().await?;
    let mut images = berth.images().await?;

    let empty = fs_usage(&mut images).await?;
    let mountpoint = empty.fs_id.as_ref().map(|f| f.mountpoint.clone());
    assert_eq!(mountpoint, Some(home.images_root().display().to_string()));
    assert!(empty.timestamp > 0);
    let (bytes0, inodes0) = bytes_and_inodes(&empty);

    let reference = format!("{}/fs/app:1", registry.addr);
    pull(&mut images, &reference).await?;
    let full = fs_usage(&mut images).await?;
    let (bytes1, inodes1) = bytes_and_inodes(&full);
    assert!(
        bytes1 >= bytes0 + FILE as u64,
        "{bytes0} → {bytes1} bytes after pulling {FILE} bytes of files"
    );
    // The files, their directory, the layer directory, the manifest and the config.
    assert!(
        inodes1 >= inodes0 + 8 + 4,
        "{inodes0} → {inodes1} inodes after the pull"
    );
    assert!(full.timestamp >= empty.timestamp);

    remove(&mut images, &reference).await?;
    let after = fs_usage(&mut images).await?;
    let (bytes2, inodes2) = bytes_and_inodes(&after);
    assert!(
        bytes2 + FILE as u64 <= bytes1 && inodes2 + 12 <= inodes1,
        "({bytes1}, {inodes1}) → ({bytes2}, {inodes2}) after the removal"
    );
    Ok(())
}
