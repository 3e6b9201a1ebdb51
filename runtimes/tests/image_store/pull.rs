//! Pulling: mirrors, tags and digests, manifest lists, layers ready for overlayfs,
//! coalescing, names as containerd's CRI plugin reports them, and `status` lookups.

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use berth_testkit::images::{
    self, image, layer, noise, push, push_list, whiteout_layer, DOCKER_MANIFEST, OCI_MANIFEST,
};
use berth_testkit::servers::{Proxy, Registry};
use runtimes::image::ImageStore;
use runtimes::Error;

use crate::{host_arch, open, open_insecure, other_arch, req};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_by_tag_and_by_digest_through_a_mirror() {
    let registry = Registry::start().await;
    let img = image(
        vec![layer(&[("bin/tool", b"v1")]), layer(&[("etc/conf", b"c")])],
        host_arch(),
        &["echo", "hi"],
        DOCKER_MANIFEST,
    );
    push(&registry.addr, "library/app", "1", &img).await;
    let tmp = tempfile::tempdir().unwrap();
    let store = docker_io_mirror(tmp.path(), &registry);

    let info = store.pull(&req("app:1")).await.unwrap();
    assert_eq!(info.id, img.config_digest);
    assert_eq!(info.repo_tags, ["docker.io/library/app:1"]);
    assert_eq!(
        info.repo_digests,
        [format!("docker.io/library/app@{}", img.manifest_digest)]
    );
    assert_eq!(info.size, img.size());
    let c = &info.config;
    assert_eq!(
        (c.os.as_str(), c.architecture.as_str(), c.user.as_str()),
        ("linux", host_arch(), "1000:1000")
    );
    assert_eq!(c.env, ["PATH=/bin", "BERTH=1"]);
    assert_eq!(
        (c.entrypoint.as_slice(), c.cmd.as_slice()),
        (
            &["/bin/sh".to_string(), "-c".into()][..],
            &["echo".to_string(), "hi".into()][..]
        )
    );
    assert_eq!(
        (c.working_dir.as_str(), c.stop_signal.as_str()),
        ("/work", "SIGQUIT")
    );
    assert_eq!(
        (c.exposed_ports.as_slice(), c.volumes.as_slice()),
        (&["8080/tcp".to_string()][..], &["/data".to_string()][..])
    );
    assert_eq!(c.labels.get("test").map(String::as_str), Some("berth"));

    let dirs = store.layer_dirs("app:1").unwrap();
    assert_eq!(dirs.len(), 2);
    assert_eq!(
        std::fs::read(dirs[0].join("etc/conf")).unwrap(),
        b"c",
        "topmost first"
    );
    assert_eq!(std::fs::read(dirs[1].join("bin/tool")).unwrap(), b"v1");

    // By digest: same image, no new tag.
    let by_digest = store
        .pull(&req(&format!(
            "docker.io/library/app@{}",
            img.manifest_digest
        )))
        .await
        .unwrap();
    assert_eq!(by_digest, info);

    // A fresh store pulling only by digest gets the repo digest and no tag.
    let tmp2 = tempfile::tempdir().unwrap();
    let fresh = open_insecure(tmp2.path(), &[&registry.addr]);
    let only_digest = fresh
        .pull(&req(&format!(
            "{}/library/app:ignored@{}",
            registry.addr, img.manifest_digest
        )))
        .await
        .unwrap();
    assert!(only_digest.repo_tags.is_empty());
    assert_eq!(
        only_digest.repo_digests,
        [format!(
            "{}/library/app@{}",
            registry.addr, img.manifest_digest
        )]
    );
    assert_eq!(fresh.list().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_with_whiteouts_stack_in_overlayfs() {
    let registry = Registry::start().await;
    let base = layer_with_dir();
    let top = whiteout_layer("a/gone", "d");
    let img = image(vec![base, top], host_arch(), &["sh"], OCI_MANIFEST);
    push(&registry.addr, "test/wh", "1", &img).await;
    let tmp = tempfile::tempdir().unwrap();
    let store = open_insecure(tmp.path(), &[&registry.addr]);
    store
        .pull(&req(&format!("{}/test/wh:1", registry.addr)))
        .await
        .unwrap();
    let dirs = store
        .layer_dirs(&format!("{}/test/wh:1", registry.addr))
        .unwrap();
    let gone = std::fs::symlink_metadata(dirs[0].join("a/gone")).unwrap();
    assert!(
        gone.file_type().is_char_device() && gone.rdev() == 0,
        "whiteout is a 0:0 char device"
    );

    // The directories work as lowerdirs: mount them and look at the merged tree.
    let merged = tmp.path().join("merged");
    std::fs::create_dir(&merged).unwrap();
    let lower = dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    nix::mount::mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        nix::mount::MsFlags::MS_RDONLY,
        Some(format!("lowerdir={lower}").as_str()),
    )
    .expect("mount overlay over the unpacked layers");
    let seen = (
        merged.join("a/keep").exists(),
        merged.join("a/gone").exists(),
        merged.join("d").is_dir(),
        merged.join("d/x").exists(),
    );
    nix::mount::umount(&merged).unwrap();
    assert_eq!(
        seen,
        (true, false, true, false),
        "keep stays, gone is whited out, d is opaque"
    );
}

fn layer_with_dir() -> images::Layer {
    layer(&[("a/keep", b"k"), ("a/gone", b"g"), ("d/x", b"x")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_lists_resolve_to_the_host_platform() {
    let registry = Registry::start().await;
    let mine = image(
        vec![layer(&[("arch", host_arch().as_bytes())])],
        host_arch(),
        &["sh"],
        DOCKER_MANIFEST,
    );
    let theirs = image(
        vec![layer(&[("arch", other_arch().as_bytes())])],
        other_arch(),
        &["sh"],
        DOCKER_MANIFEST,
    );
    let list_digest = push_list(&registry.addr, "multi/app", "1", &[&theirs, &mine]).await;
    push_list(&registry.addr, "multi/app", "foreign", &[&theirs]).await;
    let tmp = tempfile::tempdir().unwrap();
    let store = open_insecure(tmp.path(), &[&registry.addr]);
    let reference = format!("{}/multi/app:1", registry.addr);
    let info = store.pull(&req(&reference)).await.unwrap();
    assert_eq!(info.id, mine.config_digest);
    assert_eq!(info.config.architecture, host_arch());
    assert_eq!(
        info.repo_digests,
        [format!("{}/multi/app@{list_digest}", registry.addr)]
    );
    let list_len = images::manifest_list(&[&theirs, &mine]).len() as u64;
    assert_eq!(
        info.size,
        list_len + mine.size(),
        "containerd counts the index too"
    );
    let dirs = store.layer_dirs(&reference).unwrap();
    assert_eq!(
        std::fs::read(dirs[0].join("arch")).unwrap(),
        host_arch().as_bytes()
    );

    match store
        .pull(&req(&format!("{}/multi/app:foreign", registry.addr)))
        .await
    {
        Err(Error::WrongPlatform {
            platform,
            supported,
            ..
        }) => {
            assert_eq!(platform, format!("linux/{}", other_arch()));
            assert_eq!(supported, format!("linux/{}", host_arch()));
        }
        other => panic!("{other:?}"),
    }
    // A single-platform image for another architecture is refused too.
    push(&registry.addr, "multi/other", "1", &theirs).await;
    let single = store
        .pull(&req(&format!("{}/multi/other:1", registry.addr)))
        .await;
    assert!(
        matches!(single, Err(Error::WrongPlatform { .. })),
        "{single:?}"
    );
    assert_eq!(store.list().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pulls_download_each_blob_once() {
    let registry = Registry::start().await;
    let base = layer(&[("base.bin", &noise(256 * 1024, 7))]);
    let a = image(
        vec![base.clone(), layer(&[("a", b"a")])],
        host_arch(),
        &["a"],
        OCI_MANIFEST,
    );
    let b = image(
        vec![base.clone(), layer(&[("b", b"b")])],
        host_arch(),
        &["b"],
        OCI_MANIFEST,
    );
    push(&registry.addr, "share/a", "1", &a).await;
    push(&registry.addr, "share/b", "1", &b).await;
    let proxy = Proxy::start(&registry.addr).await;
    // Slow the blobs down so the pulls overlap for sure.
    proxy
        .delay_ms
        .store(5, std::sync::atomic::Ordering::Relaxed);
    let tmp = tempfile::tempdir().unwrap();
    let store = open_insecure(tmp.path(), &[&proxy.addr]);
    let (ra, rb) = (
        format!("{}/share/a:1", proxy.addr),
        format!("{}/share/b:1", proxy.addr),
    );
    let (qa, qb) = (req(&ra), req(&rb));
    let (r1, r2, r3, r4) = tokio::join!(
        store.pull(&qa),
        store.pull(&qa),
        store.pull(&qb),
        store.pull(&qb)
    );
    assert_eq!(r1.unwrap().id, a.config_digest);
    assert_eq!(r2.unwrap().id, a.config_digest);
    assert_eq!(r3.unwrap().id, b.config_digest);
    assert_eq!(r4.unwrap().id, b.config_digest);
    assert_eq!(
        proxy.blob_gets(&base.digest),
        1,
        "shared layer fetched once: {:?}",
        proxy.requests()
    );
    assert_eq!(proxy.blob_gets(&a.layers[1].digest), 1);
    assert_eq!(proxy.blob_gets(&b.layers[1].digest), 1);
    // Stored once: base + a + b layers.
    assert_eq!(crate::names(&tmp.path().join("layers")).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_tags_add_and_moved_tags_move() {
    let registry = Registry::start().await;
    let x = image(
        vec![layer(&[("x", b"x")])],
        host_arch(),
        &["x"],
        DOCKER_MANIFEST,
    );
    let y = image(
        vec![layer(&[("y", b"y")])],
        host_arch(),
        &["y"],
        DOCKER_MANIFEST,
    );
    push(&registry.addr, "tags/app", "t1", &x).await;
    push(&registry.addr, "tags/app", "t2", &x).await;
    let tmp = tempfile::tempdir().unwrap();
    let store = open_insecure(tmp.path(), &[&registry.addr]);
    let name = |t: &str| format!("{}/tags/app:{t}", registry.addr);
    store.pull(&req(&name("t1"))).await.unwrap();
    let both = store.pull(&req(&name("t2"))).await.unwrap();
    assert_eq!(both.repo_tags, [name("t1"), name("t2")]);
    assert_eq!(store.list().unwrap().len(), 1);

    push(&registry.addr, "tags/app", "t1", &y).await;
    let moved = store.pull(&req(&name("t1"))).await.unwrap();
    assert_eq!(moved.id, y.config_digest);
    assert_eq!(moved.repo_tags, [name("t1")]);
    let old = store.status(&x.config_digest).unwrap().unwrap();
    assert_eq!(old.repo_tags, [name("t2")]);
    assert_eq!(
        old.repo_digests,
        [format!("{}/tags/app@{}", registry.addr, x.manifest_digest)]
    );
    assert_eq!(store.list().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_finds_images_by_every_kind_of_reference() {
    let registry = Registry::start().await;
    let img = image(
        vec![layer(&[("s", b"s")])],
        host_arch(),
        &["s"],
        DOCKER_MANIFEST,
    );
    push(&registry.addr, "library/stat", "v1", &img).await;
    let tmp = tempfile::tempdir().unwrap();
    let store = docker_io_mirror(tmp.path(), &registry);
    store.pull(&req("stat:v1")).await.unwrap();
    let hex = img.config_digest.trim_start_matches("sha256:");
    let found: Vec<String> = [
        "stat:v1".to_string(),
        "library/stat:v1".into(),
        "docker.io/library/stat:v1".into(),
        img.config_digest.clone(),
        hex.to_string(),
        hex[..12].to_string(),
        format!("sha256:{}", &hex[..12]),
        format!("docker.io/library/stat@{}", img.manifest_digest),
        format!("stat@{}", img.manifest_digest),
        format!("stat:whatever@{}", img.manifest_digest),
    ]
    .iter()
    .filter(|r| status_id(&store, r).as_deref() == Some(img.config_digest.as_str()))
    .cloned()
    .collect();
    assert_eq!(found.len(), 10, "found only by {found:?}");
    for absent in [
        "stat:v2",
        "other",
        "sha256:0000",
        "0000",
        &format!("stat@{}", img.config_digest),
    ] {
        assert_eq!(status_id(&store, absent), None, "{absent}");
    }
    let usage = store.fs_info().unwrap();
    assert_eq!(usage.mountpoint, tmp.path());
    assert!(usage.used_bytes > 0 && usage.inodes_used >= 6, "{usage:?}");
}

/// A store whose only way to docker.io is a mirror at `registry` (docker.io itself is
/// unreachable here).
fn docker_io_mirror(root: &std::path::Path, registry: &Registry) -> ImageStore {
    open(
        root,
        serde_json::json!({"mirrors": {"docker.io": [format!("http://{}", registry.addr)]}}),
    )
}

fn status_id(store: &ImageStore, reference: &str) -> Option<String> {
    store.status(reference).unwrap().map(|i| i.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrors_are_tried_in_order_before_the_registry() {
    let (empty_mirror, full_mirror, upstream) =
        tokio::join!(Registry::start(), Registry::start(), Registry::start());
    let from_mirror = image(
        vec![layer(&[("from", b"mirror")])],
        host_arch(),
        &["m"],
        OCI_MANIFEST,
    );
    let from_upstream = image(
        vec![layer(&[("from", b"upstream")])],
        host_arch(),
        &["u"],
        OCI_MANIFEST,
    );
    push(&full_mirror.addr, "team/app", "1", &from_mirror).await;
    push(&upstream.addr, "team/app", "1", &from_upstream).await;
    push(&upstream.addr, "team/only-upstream", "1", &from_upstream).await;
    let closed = format!("http://127.0.0.1:{}", berth_testkit::servers::free_port());
    let tmp = tempfile::tempdir().unwrap();
    let store = open(
        tmp.path(),
        serde_json::json!({
            "mirrors": {upstream.addr.clone(): [closed, format!("http://{}", empty_mirror.addr), format!("http://{}", full_mirror.addr)]},
            "insecure": [upstream.addr],
        }),
    );
    // A dead mirror and one without the image are skipped; the first that has it wins,
    // and the image keeps the name it was pulled by.
    let app = format!("{}/team/app:1", upstream.addr);
    let info = store.pull(&req(&app)).await.unwrap();
    assert_eq!(info.id, from_mirror.config_digest);
    assert_eq!(info.repo_tags, [app]);
    // No mirror has this one: the registry itself serves it.
    let only = store
        .pull(&req(&format!("{}/team/only-upstream:1", upstream.addr)))
        .await
        .unwrap();
    assert_eq!(only.id, from_upstream.config_digest);
}

/// More layers than download permits, every one above the first hard-linking a file
/// of the first (so its unpack waits for that layer): the pull completes, never has
/// more blob downloads under way than the store allows, and starts them in layer
/// order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_download_a_few_at_a_time_in_order_even_when_they_wait_on_parents() {
    const PERMITS: usize = 2;
    let registry = Registry::start().await;
    let mut layers = vec![layer(&[("base.bin", &noise(64 * 1024, 1))])];
    for i in 1..8u64 {
        layers.push(images::layer_with(|b| {
            let mut link = tar::Header::new_gnu();
            link.set_entry_type(tar::EntryType::Link);
            link.set_size(0);
            link.set_mode(0o644);
            b.append_link(&mut link, format!("link-{i}"), "base.bin")
                .unwrap();
            let data = noise(64 * 1024, i + 1);
            let mut file = tar::Header::new_gnu();
            file.set_size(data.len() as u64);
            file.set_mode(0o644);
            b.append_data(&mut file, format!("data-{i}"), &data[..])
                .unwrap();
        }));
    }
    let img = image(layers, host_arch(), &["sh"], OCI_MANIFEST);
    push(&registry.addr, "test/many", "1", &img).await;
    let proxy = Proxy::start(&registry.addr).await;
    // Each blob takes a while, so downloads overlap whenever they may.
    proxy
        .delay_ms
        .store(5, std::sync::atomic::Ordering::Relaxed);
    let tmp = tempfile::tempdir().unwrap();
    let store = open(
        tmp.path(),
        serde_json::json!({ "insecure": [&proxy.addr], "max_concurrent_downloads": PERMITS }),
    );
    let reference = format!("{}/test/many:1", proxy.addr);
    store.pull(&req(&reference)).await.unwrap();

    assert_eq!(
        proxy.peak_blob_streams(),
        PERMITS as u64,
        "downloads at once: {:?}",
        proxy.requests()
    );
    let gets: Vec<usize> = proxy
        .requests()
        .iter()
        .filter(|r| r.starts_with("GET ") && r.contains("/blobs/"))
        .filter_map(|r| img.layers.iter().position(|l| r.contains(&l.digest)))
        .collect();
    assert_eq!(gets.len(), img.layers.len(), "{:?}", proxy.requests());
    for (at, layer) in gets.iter().enumerate() {
        assert!(
            at.abs_diff(*layer) < PERMITS,
            "layer {layer} fetched as blob {at}: {gets:?}"
        );
    }
    let dirs = store.layer_dirs(&reference).unwrap();
    assert_eq!(dirs.len(), 8);
    for (i, dir) in dirs.iter().rev().enumerate().skip(1) {
        assert_eq!(
            std::fs::read(dir.join(format!("link-{i}"))).unwrap(),
            noise(64 * 1024, 1),
            "layer {i}'s hard link copied the base file up"
        );
    }
}
