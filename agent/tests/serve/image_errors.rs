//! Bad input through the socket: each failed PullImage answers with its gRPC code and
//! a message naming what failed, and leaves nothing under the state dir's `images/`.

use anyhow::Result;
use berth_testkit::assert_empty;
use berth_testkit::images::{one_file_image, push, DOCKER_MANIFEST};
use berth_testkit::servers::{free_port, FakeRegistry, Registry};
use tonic::Code;

use crate::{list, pull, Home};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_reference_is_invalid_argument() -> Result<()> {
    let home = Home::new("")?;
    let berth = home.start().await?;
    let mut images = berth.images().await?;
    for bad in [
        "Bad:Ref",
        "app/UPPER:1",
        "two words:1",
        "app:bad/tag",
        "app@sha256:1234",
        "app@md5:00",
    ] {
        let status = pull(&mut images, bad).await.expect_err(bad);
        assert_eq!(status.code(), Code::InvalidArgument, "{bad}: {status:?}");
        assert!(
            status.message().contains(bad),
            "{bad} is not named: {}",
            status.message()
        );
    }
    assert!(list(&mut images, None).await?.is_empty());
    assert_empty(&home.images_root());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_not_found() -> Result<()> {
    let registry = Registry::start().await;
    let img = one_file_image("f", DOCKER_MANIFEST);
    push(&registry.addr, "there/app", "1", &img).await;
    let home = Home::insecure(&[&registry.addr])?;
    let berth = home.start().await?;
    let mut images = berth.images().await?;
    for missing in [
        format!("{}/there/app:2", registry.addr),
        format!("{}/not/there:1", registry.addr),
    ] {
        let status = pull(&mut images, &missing).await.expect_err(&missing);
        assert_eq!(status.code(), Code::NotFound, "{missing}: {status:?}");
        assert!(status.message().contains(&missing), "{status:?}");
    }
    assert!(list(&mut images, None).await?.is_empty());
    assert_empty(&home.images_root());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_registry_is_unavailable_and_named() -> Result<()> {
    // Nobody listens there: the connection is refused.
    let nowhere = format!("127.0.0.1:{}", free_port());
    let home = Home::insecure(&[&nowhere])?;
    let berth = home.start().await?;
    let mut images = berth.images().await?;
    let reference = format!("{nowhere}/app:1");
    let status = pull(&mut images, &reference).await.expect_err("pulled");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains(&format!("registry {nowhere}")),
        "the registry is not named: {}",
        status.message()
    );
    assert!(list(&mut images, None).await?.is_empty());
    assert_empty(&home.images_root());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_layer_is_data_loss_and_keeps_nothing() -> Result<()> {
    let (fake, bad) = FakeRegistry::with_a_corrupt_layer().await;
    let home = Home::insecure(&[&fake.addr])?;
    let berth = home.start().await?;
    let mut images = berth.images().await?;
    let reference = format!("{}/lies/app:1", fake.addr);
    let status = pull(&mut images, &reference).await.expect_err("pulled");
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    assert!(status.message().contains(&bad.digest), "{status:?}");
    let requests = fake.requests.lock().unwrap().clone();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("GET ") && r.contains(&bad.digest)),
        "the corrupted blob was never fetched: {requests:?}"
    );
    assert!(list(&mut images, None).await?.is_empty());
    assert_empty(&home.images_root());
    Ok(())
}
