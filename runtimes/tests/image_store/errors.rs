//! Failures: each maps to its error kind, names what failed, and keeps nothing.

use berth_testkit::images::{
    image, image_with_diff_ids, layer, noise, push, push_as, sha256, DOCKER_MANIFEST,
};
use berth_testkit::servers::{free_port, FakeContent, FakeRegistry, Registry};
use runtimes::types::RegistryAuth;
use runtimes::Error;

use crate::{assert_empty, open, open_insecure, req, req_auth};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_registry_is_unavailable_naming_every_endpoint() {
    let (mirror, upstream) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let tmp = tempfile::tempdir().unwrap();
    let store = open(
        tmp.path(),
        serde_json::json!({"mirrors": {upstream.clone(): [format!("http://{mirror}")]}, "insecure": [upstream]}),
    );
    match store.pull(&req(&format!("{upstream}/x:1"))).await {
        Err(Error::Unavailable { service, message }) => {
            assert!(service.contains(&upstream), "{service}");
            assert!(
                message.contains(&mirror) && message.contains(&upstream),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    // A name that does not resolve is unreachable too.
    match store.pull(&req("nonexistent.invalid/x:1")).await {
        Err(Error::Unavailable { service, message }) => {
            assert!(
                service.contains("nonexistent.invalid"),
                "{service}: {message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_empty(tmp.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_images_are_not_found_and_bad_references_invalid() {
    let registry = Registry::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let store = open_insecure(tmp.path(), &[&registry.addr]);
    for missing in [
        format!("{}/no/such:1", registry.addr),
        format!("{}/no/such@{}", registry.addr, sha256(b"x")),
    ] {
        match store.pull(&req(&missing)).await {
            Err(Error::NotFound { kind, id }) => {
                assert_eq!((kind, id.as_str()), ("image", missing.as_str()))
            }
            other => panic!("{missing}: {other:?}"),
        }
    }
    match store.pull(&req("Bad:Ref")).await {
        Err(Error::InvalidSpec(message)) => assert!(message.contains("Bad:Ref"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert_empty(tmp.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_blobs_are_data_loss_and_leave_nothing() {
    let (fake, bad) = FakeRegistry::with_a_corrupt_layer().await;
    let tmp = tempfile::tempdir().unwrap();
    let store = open_insecure(tmp.path(), &[&fake.addr]);
    match store.pull(&req(&format!("{}/lies/app:1", fake.addr))).await {
        Err(Error::DataLoss { what, message }) => {
            assert!(what.contains(&bad.digest), "{what}: {message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(store.list().unwrap().is_empty());
    assert_empty(tmp.path());
}

/// A layer whose bytes all unpack fine (the same tar, its gzip header's mtime
/// changed) but whose digest is not the manifest's: the pull fails with the blob's
/// digest named once the download ends, and the layer unpacked meanwhile is not kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layer_with_another_digest_is_data_loss_even_when_it_unpacks() {
    let good = layer(&[("ok", b"fine")]);
    let swapped = layer(&[("f", &noise(256 * 1024, 5))]);
    let img = image(
        vec![good, swapped.clone()],
        crate::host_arch(),
        &["x"],
        DOCKER_MANIFEST,
    );
    let mut other = swapped.blob.clone();
    // Bytes 4 to 7 of a gzip member are its MTIME, which decompression ignores.
    other[4] ^= 0x01;
    let content = FakeContent::default()
        .with_image("1", &img)
        .replace_blob(&swapped.digest, other);
    let fake = FakeRegistry::start(content).await;
    let tmp = tempfile::tempdir().unwrap();
    let store = open_insecure(tmp.path(), &[&fake.addr]);
    match store.pull(&req(&format!("{}/lies/app:1", fake.addr))).await {
        Err(Error::DataLoss { what, message }) => {
            assert!(what.contains(&swapped.digest), "{what}: {message}");
            assert!(message.contains("digest"), "{what}: {message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(store.list().unwrap().is_empty());
    assert_empty(tmp.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_lying_about_diff_ids_is_data_loss() {
    let registry = Registry::start().await;
    let l = layer(&[("f", b"content")]);
    let claimed = sha256(b"something else");
    let img = image_with_diff_ids(
        vec![l.clone()],
        crate::host_arch(),
        &["x"],
        DOCKER_MANIFEST,
        vec![claimed.clone()],
    );
    push(&registry.addr, "lies/diff", "1", &img).await;
    let tmp = tempfile::tempdir().unwrap();
    let store = open_insecure(tmp.path(), &[&registry.addr]);
    match store
        .pull(&req(&format!("{}/lies/diff:1", registry.addr)))
        .await
    {
        Err(Error::DataLoss { what, message }) => {
            assert!(what.contains(&l.digest), "{what}");
            assert!(
                message.contains(&claimed) && message.contains(&l.diff_id),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_empty(tmp.path());
}

/// bcrypt of "berth-secret" (generated once with Python's crypt, `$2b$12$`).
const HASH: &str = "$2b$12$ukVS0pk6oDpJNDpXz0p2Peb.dkhjSk7Jgr3ZbdKvdoehJ0Mcnxmg.";

fn basic(user: &str, password: &str) -> RegistryAuth {
    RegistryAuth {
        username: user.into(),
        password: password.into(),
        ..RegistryAuth::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_from_the_request_or_the_config() {
    let registry = Registry::start_with_htpasswd("berth", HASH).await;
    let img = image(
        vec![layer(&[("auth", b"a")])],
        crate::host_arch(),
        &["x"],
        DOCKER_MANIFEST,
    );
    let creds = oci_client::secrets::RegistryAuth::Basic("berth".into(), "berth-secret".into());
    push_as(&registry.addr, "private/app", "1", &img, creds).await;
    let reference = format!("{}/private/app:1", registry.addr);
    let tmp = tempfile::tempdir().unwrap();
    let store = open_insecure(tmp.path(), &[&registry.addr]);
    for (label, attempt) in [
        ("no credentials", req(&reference)),
        (
            "wrong password",
            req_auth(&reference, basic("berth", "nope")),
        ),
    ] {
        match store.pull(&attempt).await {
            Err(Error::Unauthenticated { service, .. }) => {
                assert!(service.contains(&registry.addr), "{label}: {service}")
            }
            other => panic!("{label}: {other:?}"),
        }
    }
    assert_empty(tmp.path());
    assert_eq!(
        store
            .pull(&req_auth(&reference, basic("berth", "berth-secret")))
            .await
            .unwrap()
            .id,
        img.config_digest
    );
    let encoded = RegistryAuth {
        auth: base64_of("berth:berth-secret"),
        ..RegistryAuth::default()
    };
    assert_eq!(
        store.pull(&req_auth(&reference, encoded)).await.unwrap().id,
        img.config_digest
    );

    let tmp2 = tempfile::tempdir().unwrap();
    let configured = open(
        tmp2.path(),
        serde_json::json!({
            "insecure": [registry.addr],
            "credentials": {registry.addr.clone(): {"username": "berth", "password": "berth-secret"}},
        }),
    );
    assert_eq!(
        configured.pull(&req(&reference)).await.unwrap().id,
        img.config_digest
    );
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_tokens_are_exchanged_for_bearer_tokens() {
    let img = image(
        vec![layer(&[("tok", b"t")])],
        crate::host_arch(),
        &["x"],
        DOCKER_MANIFEST,
    );
    let mut content = FakeContent::default().with_image("1", &img);
    content.bearer = Some(("refresh-123".into(), "access-456".into()));
    let fake = FakeRegistry::start(content).await;
    let tmp = tempfile::tempdir().unwrap();
    let store = open_insecure(tmp.path(), &[&fake.addr]);
    let reference = format!("{}/tok/app:1", fake.addr);
    let identity = |t: &str| RegistryAuth {
        identity_token: t.into(),
        ..RegistryAuth::default()
    };
    let refused = store.pull(&req_auth(&reference, identity("wrong"))).await;
    assert!(
        matches!(refused, Err(Error::Unauthenticated { .. })),
        "{refused:?}"
    );
    let info = store
        .pull(&req_auth(&reference, identity("refresh-123")))
        .await
        .unwrap();
    assert_eq!(info.id, img.config_digest);
    let requests = fake.requests.lock().unwrap().clone();
    assert!(
        requests.iter().any(|r| r.starts_with("POST /token")),
        "{requests:?}"
    );
    let bearer = RegistryAuth {
        registry_token: "access-456".into(),
        ..RegistryAuth::default()
    };
    store.remove(&reference).unwrap();
    assert_eq!(
        store.pull(&req_auth(&reference, bearer)).await.unwrap().id,
        img.config_digest
    );
}

#[test]
fn a_second_open_of_the_same_root_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let _first = open_insecure(tmp.path(), &[]);
    let config = runtimes::image::RegistryConfig::default();
    match runtimes::image::ImageStore::open(tmp.path(), config) {
        Err(Error::FailedPrecondition(message)) => {
            assert!(message.contains("index.redb"), "{message}")
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("opened twice"),
    }
}
