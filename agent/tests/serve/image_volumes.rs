//! Image volumes (KEP-4639), black-box, on youki and on the containerd backend (a real
//! containerd 2.4, as in `containerd.rs`) side by side: an image's files are mounted
//! read-only, with `subPath`, nothing a pod writes reaches berth's image store, no
//! `subPath` leads out of the image (links are resolved inside it), a refused one
//! leaves nothing, the image cannot be removed while mounted, the mounts survive a
//! `kill -9` of berth and go with their container.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use berth_proto::cri::v1::*;
use berth_testkit::containerd::Containerd;
use berth_testkit::host::mounts_under;
use berth_testkit::images::{image, layer_with_links, push, DOCKER_MANIFEST};
use tonic::Code;

use crate::containerd::{backend_config, files_named, in_containerd, remove_all_and_compare};
use crate::world::{
    container_status, create, create_and_start, exec, list_containers, run_on,
    stop_and_remove_container, Client, World,
};
use crate::{pull, spec};

/// The image's own `/etc/passwd`: what a `subPath` through a link to `/etc` must show
/// instead of the host's.
const IMAGE_PASSWD: &str = "image-own:x:0:0::/:/bin/false\n";
const HELLO: &str = "hello from an image volume\n";

/// Pushes the volume's image to the world's registry: `/data/hello.txt`, an `/etc` of
/// its own and links an attacker's image would ship. Its reference.
async fn push_volume_image(world: &World) -> String {
    let layer = layer_with_links(
        &[
            ("data/hello.txt", HELLO.as_bytes()),
            ("etc/passwd", IMAGE_PASSWD.as_bytes()),
        ],
        &[
            ("abs-etc", "/etc"),
            ("up", "../../../../../../../.."),
            ("magic", "/proc/self/root/etc"),
            ("file", "data/hello.txt"),
        ],
    );
    let img = image(
        vec![layer],
        berth_testkit::host_arch(),
        &["true"],
        DOCKER_MANIFEST,
    );
    push(world.registry(), "test/volume", "1", &img).await;
    format!("{}/test/volume:1", world.registry())
}

/// A read-only image volume of `image` at `path`.
fn image_volume(path: &str, image: &str, sub_path: &str) -> Mount {
    Mount {
        container_path: path.into(),
        readonly: true,
        image: spec(image),
        image_sub_path: sub_path.into(),
        ..Default::default()
    }
}

/// The image-volume mounts on the host (under the rootfs directories of the test's
/// containers, either backend's).
fn volume_mounts(world: &World) -> Vec<String> {
    mounts_under(&world.dir())
        .into_iter()
        .filter(|m| m.contains("/rootfs/volumes/"))
        .collect()
}

/// `cat path` in `id`.
async fn read(client: &mut Client, id: &str, path: &str) -> Result<String> {
    let out = exec(client, id, &["cat", path]).await?;
    ensure!(
        out.exit_code == 0,
        "cat {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// What the container `id` of `handler` sees of its four image volumes: files read,
/// `subPath`s applied (through links, inside the image), writes refused, the image's
/// id reported on each mount.
async fn check_volumes(client: &mut Client, handler: &str, id: &str, image_id: &str) -> Result<()> {
    for path in ["/vol/data/hello.txt", "/sub/hello.txt"] {
        ensure!(
            read(client, id, path).await? == HELLO,
            "{handler:?}: {path}"
        );
    }
    // `abs-etc` (-> /etc) and `up/etc` (-> ../../..): the image's /etc, not the host's.
    for path in ["/linked/passwd", "/up/passwd"] {
        ensure!(
            read(client, id, path).await? == IMAGE_PASSWD,
            "{handler:?}: {path} is not the image's own"
        );
    }
    // The subPath's directory is the mount, not the image's root.
    let out = exec(client, id, &["test", "-e", "/sub/data"]).await?;
    ensure!(out.exit_code == 1, "{handler:?}: /sub/data exists");
    for target in ["/vol/new", "/sub/new", "/vol/data/hello.txt"] {
        let out = exec(client, id, &["sh", "-c", &format!("echo x > {target}")]).await?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.exit_code != 0 && err.contains("Read-only file system"),
            "{handler:?}: writing {target}: exit {} {err:?}",
            out.exit_code
        );
    }
    let (status, _) = container_status(client, id).await?;
    let images: Vec<(&str, &str)> = status
        .mounts
        .iter()
        .filter_map(|m| Some((m.container_path.as_str(), m.image.as_ref()?)))
        .filter(|(_, i)| !i.image.is_empty())
        .map(|(path, i)| (path, i.image_ref.as_str()))
        .collect();
    ensure!(
        images.len() == 4 && images.iter().all(|(_, r)| *r == image_id),
        "{handler:?}: ContainerStatus mounts {images:?}, want 4 of {image_id}"
    );
    Ok(())
}

/// Polls until `world` has `want` image-volume mounts (a removal's teardown runs in
/// the background).
async fn wait_volume_mounts(world: &World, want: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = volume_mounts(world);
        if now.len() == want {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "image-volume mounts: {now:?}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_volumes_on_youki_and_containerd_are_read_only_confined_and_leave_nothing(
) -> Result<()> {
    let containerd = Containerd::start();
    let world = World::with_config(&backend_config(containerd.socket())).await?;
    let volume = push_volume_image(&world).await;
    let before = world.host();
    let mut berth = world.start().await?;
    let mut images = berth.images().await?;
    let image_id = pull(&mut images, &volume).await?;
    let mut client = berth.runtime().await?;

    let mut made = Vec::new();
    for (handler, name) in [("", "iv-youki"), ("containerd", "iv-containerd")] {
        let pod_config = world.pod(name, &[]);
        let pod = run_on(&mut client, &pod_config, handler).await?;
        // What leads out of the image, or to no directory of it, is refused, and the
        // refused container leaves no mount and no container behind.
        for (sub_path, why) in [
            ("missing", "not a directory of the image"),
            ("magic", "not a directory of the image"),
            // Directories the host has and the image has not.
            ("abs-etc/ssl", "not a directory of the image"),
            ("up/root", "not a directory of the image"),
            ("file", "not a directory of the image"),
            (
                "../etc",
                "image_sub_path must be a relative path without `..`",
            ),
            ("/etc", "image_sub_path must be a relative path"),
        ] {
            let mut config = world.container("refused", &["sleep", "600"]);
            config.mounts.push(image_volume("/vol", &volume, sub_path));
            let refused = create(&mut client, &pod, &pod_config, &config)
                .await
                .expect_err(sub_path);
            ensure!(
                refused.code() == Code::InvalidArgument && refused.message().contains(why),
                "{handler:?} subPath {sub_path}: {refused:?}"
            );
            ensure!(
                volume_mounts(&world).len() == made.len() * 4,
                "{handler:?} subPath {sub_path} left {:?}",
                volume_mounts(&world)
            );
            let listed = list_containers(&mut client).await?;
            ensure!(
                listed.iter().all(|c| c.pod_sandbox_id != pod),
                "{handler:?} subPath {sub_path} left {listed:?}"
            );
        }
        ensure!(
            in_containerd(&containerd, "containers").is_empty(),
            "containerd holds a refused container"
        );
        let mut config = world.container("reader", &["sleep", "600"]);
        config.mounts.extend([
            image_volume("/vol", &volume, ""),
            image_volume("/sub", &volume, "data"),
            image_volume("/linked", &volume, "abs-etc"),
            image_volume("/up", &volume, "up/etc"),
        ]);
        let id = create_and_start(&mut client, &pod, &pod_config, &config).await?;
        made.push((handler, id));
    }
    ensure!(in_containerd(&containerd, "containers").len() == 1);
    wait_volume_mounts(&world, 8).await?;
    for (handler, id) in &made {
        check_volumes(&mut client, handler, id, &image_id).await?;
    }

    // Mounted, the image stays: RemoveImage names the container using it.
    let refused = images
        .remove_image(RemoveImageRequest {
            image: spec(&volume),
        })
        .await
        .expect_err("removing a mounted image");
    ensure!(
        refused.code() == Code::FailedPrecondition
            && refused.message().contains("in use by container reader"),
        "{refused:?}"
    );

    // berth killed and back: the volumes stay mounted and readable.
    drop((client, images));
    berth.kill9().await?;
    let berth = world.start_as("berth-restarted").await?;
    let mut client = berth.runtime().await?;
    let mut images = berth.images().await?;
    wait_volume_mounts(&world, 8).await?;
    for (handler, id) in &made {
        check_volumes(&mut client, handler, id, &image_id).await?;
    }

    // Each removal takes its container's volumes down.
    let mut left = 8;
    for (handler, id) in &made {
        stop_and_remove_container(&mut client, id)
            .await
            .with_context(|| format!("{handler:?}: removing {id}"))?;
        left -= 4;
        wait_volume_mounts(&world, left).await?;
    }
    // Nothing the pods tried to write reached the image store.
    let written = files_named(&world.home.images_root(), "new");
    ensure!(
        written.is_empty(),
        "written into the image store: {written:?}"
    );
    images
        .remove_image(RemoveImageRequest {
            image: spec(&volume),
        })
        .await?;

    remove_all_and_compare(&mut client, &containerd, berth, &world, &before).await
}
