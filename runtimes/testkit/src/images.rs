//! Images built in the test: layers from tar entries, Docker or OCI manifests,
//! manifest lists, pushed to a registry with oci-client's push API.

use std::io::Write;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use reqwest::header::HeaderValue;
use serde_json::json;
use sha2::{Digest, Sha256};

/// Docker's image manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker's manifest list media type.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI's image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// One layer: its gzip blob, and the digests of the blob and of the tar inside.
#[derive(Clone)]
pub struct Layer {
    /// The gzip blob as the registry serves it.
    pub blob: Vec<u8>,
    /// The digest of the uncompressed tar.
    pub diff_id: String,
    /// The digest of the blob.
    pub digest: String,
}

fn header(kind: tar::EntryType, size: usize, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size as u64);
    h.set_mode(mode);
    h.set_mtime(1_700_000_000);
    h
}

/// A gzip layer of regular files (and the directories they need).
pub fn layer(files: &[(&str, &[u8])]) -> Layer {
    layer_with_links(files, &[])
}

/// A gzip layer of regular files and of symlinks (`(path, target)`), the targets
/// kept as written (absolute or with `..`: what an attacker's image would ship).
pub fn layer_with_links(files: &[(&str, &[u8])], links: &[(&str, &str)]) -> Layer {
    layer_with(|b| {
        for (path, data) in files {
            b.append_data(
                &mut header(tar::EntryType::Regular, data.len(), 0o644),
                path,
                *data,
            )
            .unwrap();
        }
        for (path, target) in links {
            b.append_link(&mut header(tar::EntryType::Symlink, 0, 0o777), path, target)
                .unwrap();
        }
    })
}

/// A gzip layer built by `build`.
pub fn layer_with(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Layer {
    let mut b = tar::Builder::new(Vec::new());
    build(&mut b);
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let blob = gz.finish().unwrap();
    Layer {
        diff_id: sha256(&tar),
        digest: sha256(&blob),
        blob,
    }
}

/// A layer deleting `path` with a whiteout and making `dir` opaque.
pub fn whiteout_layer(path: &str, dir: &str) -> Layer {
    layer_with(|b| {
        let wh = match path.rsplit_once('/') {
            Some((parent, name)) => format!("{parent}/.wh.{name}"),
            None => format!(".wh.{path}"),
        };
        b.append_data(&mut header(tar::EntryType::Regular, 0, 0o644), wh, &[][..])
            .unwrap();
        b.append_data(
            &mut header(tar::EntryType::Directory, 0, 0o755),
            dir,
            &[][..],
        )
        .unwrap();
        let opq = format!("{dir}/.wh..wh..opq");
        b.append_data(&mut header(tar::EntryType::Regular, 0, 0o644), opq, &[][..])
            .unwrap();
    })
}

/// `len` bytes that do not compress (so a download takes a while when throttled).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A busybox layer for this host: the static `/bin/busybox` of Debian's
/// `busybox-static` with a symlink per applet in `/bin`, `/etc/passwd` and
/// `/etc/group` (root, `default-user` 1000 also in group 50000, nobody), and the
/// directories containers expect (`/tmp` sticky, `/proc`, `/sys`, `/dev`, `/www` with
/// an `index.html` for `httpd`).
pub fn busybox_layer() -> Layer {
    let busybox = std::fs::read("/bin/busybox")
        .expect("/bin/busybox (apt package busybox-static, hack/install-deps)");
    let applets = std::process::Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    let applets = String::from_utf8(applets.stdout).unwrap();
    layer_with(|b| {
        for (dir, mode) in [
            ("bin", 0o755),
            ("etc", 0o755),
            ("tmp", 0o1777),
            ("proc", 0o555),
            ("sys", 0o555),
            ("dev", 0o755),
            ("root", 0o700),
            ("www", 0o755),
        ] {
            b.append_data(
                &mut header(tar::EntryType::Directory, 0, mode),
                dir,
                &[][..],
            )
            .unwrap();
        }
        b.append_data(
            &mut header(tar::EntryType::Regular, busybox.len(), 0o755),
            "bin/busybox",
            busybox.as_slice(),
        )
        .unwrap();
        for applet in applets.lines().filter(|a| !a.is_empty() && *a != "busybox") {
            let mut h = header(tar::EntryType::Symlink, 0, 0o777);
            b.append_link(&mut h, format!("bin/{applet}"), "busybox")
                .unwrap();
        }
        let files: [(&str, &[u8]); 3] = [
            (
                "etc/passwd",
                b"root:x:0:0:root:/root:/bin/sh\n\
                  default-user:x:1000:1000::/tmp:/bin/sh\n\
                  nobody:x:65534:65534:nobody:/:/bin/false\n",
            ),
            (
                "etc/group",
                b"root:x:0:\ndefault-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\nnogroup:x:65534:\n",
            ),
            ("www/index.html", b"hello from a berth pod\n"),
        ];
        for (path, data) in files {
            b.append_data(
                &mut header(tar::EntryType::Regular, data.len(), 0o644),
                path,
                data,
            )
            .unwrap();
        }
    })
}

/// A single-platform image.
#[derive(Clone)]
pub struct Image {
    /// Bottom layer first.
    pub layers: Vec<Layer>,
    /// The image config JSON.
    pub config: Vec<u8>,
    /// Its digest: the image id.
    pub config_digest: String,
    /// The manifest JSON.
    pub manifest: Vec<u8>,
    /// Its digest: what a repo digest names.
    pub manifest_digest: String,
    /// The manifest's media type.
    pub media_type: &'static str,
    /// The OCI architecture.
    pub arch: String,
}

/// An image of `layers` for linux/`arch` with `cmd`; `media_type` picks Docker or OCI.
pub fn image(layers: Vec<Layer>, arch: &str, cmd: &[&str], media_type: &'static str) -> Image {
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
    image_with_diff_ids(
        layers.clone(),
        arch,
        cmd,
        media_type,
        diff_ids.iter().map(|s| s.to_string()).collect(),
    )
}

/// A one-layer image for this host holding the file `name` (whose content is its
/// name), with `cmd` `echo <name>`.
pub fn one_file_image(name: &str, media_type: &'static str) -> Image {
    image(
        vec![layer(&[(name, name.as_bytes())])],
        crate::host_arch(),
        &["echo", name],
        media_type,
    )
}

/// Like `image`, with the config claiming `diff_ids` (a lie, for DataLoss tests).
pub fn image_with_diff_ids(
    layers: Vec<Layer>,
    arch: &str,
    cmd: &[&str],
    media_type: &'static str,
    diff_ids: Vec<String>,
) -> Image {
    image_of("linux", layers, arch, cmd, media_type, diff_ids)
}

/// Like `image`, for `os` (a `windows` image for the ROUTE_TO_PEER tests).
pub fn image_for_os(os: &str, layers: Vec<Layer>, cmd: &[&str], media_type: &'static str) -> Image {
    let diff_ids = layers.iter().map(|l| l.diff_id.clone()).collect();
    image_of(os, layers, crate::host_arch(), cmd, media_type, diff_ids)
}

fn image_of(
    os: &str,
    layers: Vec<Layer>,
    arch: &str,
    cmd: &[&str],
    media_type: &'static str,
    diff_ids: Vec<String>,
) -> Image {
    let config = serde_json::to_vec(&json!({
        "architecture": arch,
        "os": os,
        "config": {
            "User": "1000:1000",
            "Env": ["PATH=/bin", "BERTH=1"],
            "Entrypoint": ["/bin/sh", "-c"],
            "Cmd": cmd,
            "WorkingDir": "/work",
            "StopSignal": "SIGQUIT",
            "Labels": {"test": "berth"},
            "ExposedPorts": {"8080/tcp": {}},
            "Volumes": {"/data": {}},
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let (config_type, layer_type) = if media_type == DOCKER_MANIFEST {
        (
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        )
    } else {
        (
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )
    };
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": config_type, "digest": sha256(&config), "size": config.len()},
        "layers": layers.iter().map(|l| json!({
            "mediaType": layer_type, "digest": l.digest, "size": l.blob.len()
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    Image {
        config_digest: sha256(&config),
        manifest_digest: sha256(&manifest),
        layers,
        config,
        manifest,
        media_type,
        arch: arch.to_string(),
    }
}

impl Image {
    /// containerd's size for a single-manifest image.
    pub fn size(&self) -> u64 {
        (self.manifest.len()
            + self.config.len()
            + self.layers.iter().map(|l| l.blob.len()).sum::<usize>()) as u64
    }

    /// The OCI chain ids of the layers, bottom first: what names each layer stacked
    /// on the ones below it (`sha256(parent chain id + " " + diff id)`).
    pub fn chain_ids(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let next = match out.last() {
                None => layer.diff_id.clone(),
                Some(parent) => sha256(format!("{parent} {}", layer.diff_id).as_bytes()),
            };
            out.push(next);
        }
        out
    }
}

/// A Docker manifest list of `images`.
pub fn manifest_list(images: &[&Image]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": images.iter().map(|i| json!({
            "mediaType": i.media_type,
            "digest": i.manifest_digest,
            "size": i.manifest.len(),
            "platform": {"architecture": i.arch, "os": "linux"},
        })).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// A client pushing to `addr` over plain http.
pub fn client() -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..ClientConfig::default()
    })
}

/// Pushes `image`'s blobs and manifest as `addr/repo:tag`.
pub async fn push(addr: &str, repo: &str, tag: &str, image: &Image) {
    push_as(addr, repo, tag, image, RegistryAuth::Anonymous).await
}

/// `push` with credentials.
pub async fn push_as(addr: &str, repo: &str, tag: &str, image: &Image, auth: RegistryAuth) {
    let client = client();
    let reference = Reference::with_tag(addr.to_string(), repo.to_string(), tag.to_string());
    client.store_auth_if_needed(addr, &auth).await;
    for layer in &image.layers {
        client
            .push_blob(&reference, layer.blob.clone(), &layer.digest)
            .await
            .unwrap();
    }
    client
        .push_blob(&reference, image.config.clone(), &image.config_digest)
        .await
        .unwrap();
    client
        .push_manifest_raw(
            &reference,
            image.manifest.clone(),
            HeaderValue::from_static(image.media_type),
        )
        .await
        .unwrap();
}

/// Pushes every image by digest and a manifest list of them as `addr/repo:tag`;
/// returns the list's digest.
pub async fn push_list(addr: &str, repo: &str, tag: &str, images: &[&Image]) -> String {
    for image in images {
        push(addr, repo, &format!("only-{}", image.arch), image).await;
    }
    let list = manifest_list(images);
    let reference = Reference::with_tag(addr.to_string(), repo.to_string(), tag.to_string());
    client()
        .push_manifest_raw(
            &reference,
            list.clone(),
            HeaderValue::from_static(DOCKER_LIST),
        )
        .await
        .unwrap();
    sha256(&list)
}

/// A running registry holding [`busybox_layer`] as `test/busybox:1` (command `sh`),
/// and that image's reference: what tests that run containers pull.
pub async fn busybox_registry() -> (crate::servers::Registry, String) {
    let registry = crate::servers::Registry::start().await;
    let img = image(
        vec![busybox_layer()],
        crate::host_arch(),
        &["sh"],
        DOCKER_MANIFEST,
    );
    push(&registry.addr, "test/busybox", "1", &img).await;
    let reference = format!("{}/test/busybox:1", registry.addr);
    (registry, reference)
}
