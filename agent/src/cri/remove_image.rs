//! `RemoveImage`.

use berth_proto::cri::v1::{RemoveImageRequest, RemoveImageResponse};
use runtimes::{Error, Runtime};

use super::shared::image::requested_image;
use super::Cri;
use crate::store::ContainerRecord;

const METHOD: &str = "RemoveImage";

/// Removes the image; removing an absent image succeeds (the runtime guarantees it).
/// An image a container still uses (its rootfs or an image volume, in any state:
/// created and exited containers are restarted from the same layers) is refused
/// with `FailedPrecondition` naming the container, as CRI-O refuses it: the image
/// store would otherwise sweep the layers under that container's overlay mount.
/// kubelet's image GC only removes images no container uses, so it never meets this.
pub(super) async fn remove_image(
    cri: &Cri,
    request: RemoveImageRequest,
) -> runtimes::Result<RemoveImageResponse> {
    let reference = requested_image(METHOD, request.image.as_ref())?;
    let runtime: &dyn Runtime = cri.runtime.as_ref();
    if let Some(image) = runtime.image_status(reference).await? {
        if let Some(user) = first_user(cri, &image.id).await? {
            return Err(Error::FailedPrecondition(format!(
                "{METHOD} {reference}: image {} is in use by container {} ({}); remove the container first",
                image.id,
                user.name(),
                user.id
            )));
        }
    }
    runtime.remove_image(reference).await?;
    Ok(RemoveImageResponse {})
}

/// A container whose rootfs or image volume is the image `id`.
async fn first_user(cri: &Cri, id: &str) -> runtimes::Result<Option<ContainerRecord>> {
    for record in cri.store.list::<ContainerRecord>()? {
        if record.image_id == id {
            return Ok(Some(record));
        }
        for mount in &record.config.mounts {
            let Some(image) = mount.image.as_ref().filter(|i| !i.image.is_empty()) else {
                continue;
            };
            // CreateContainer recorded the volume's image id as its `image_ref`.
            let uses = if image.image_ref.is_empty() {
                let found = cri.runtime.image_status(&image.image).await?;
                found.is_some_and(|f| f.id == id)
            } else {
                image.image_ref == id
            };
            if uses {
                return Ok(Some(record));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use berth_proto::cri::v1::{ImageSpec, Mount, PullImageRequest, RemoveContainerRequest};
    use runtimes::types::ImageInfo;

    use super::*;
    use crate::cri::pull_image::pull_image;
    use crate::cri::remove_container::remove_container;
    use crate::cri::shared::image::tests::busybox;
    use crate::cri::shared::testing::{container_request, Harness};
    use crate::cri::{create_container, start_container};

    fn request(image: &str) -> RemoveImageRequest {
        RemoveImageRequest {
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
        }
    }

    fn removals(h: &Harness) -> usize {
        h.mock
            .calls()
            .into_iter()
            .filter(|c| c.operation == "remove_image")
            .count()
    }

    async fn drop_container(h: &Harness, id: &str) {
        remove_container(
            &h.cri,
            RemoveContainerRequest {
                container_id: id.into(),
            },
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn removes_and_is_idempotent() {
        let h = Harness::new().await;
        remove_image(&h.cri, request("sha256:aaaa")).await.unwrap();
        assert!(!h.mock.holds_image("sha256:aaaa"));
        remove_image(&h.cri, request("sha256:aaaa")).await.unwrap();
        // Each call reaches the backends: removing what is absent succeeds there.
        assert_eq!(removals(&h), 2);
    }

    #[tokio::test]
    async fn an_empty_image_is_invalid() {
        let h = Harness::new().await;
        let err = remove_image(&h.cri, RemoveImageRequest::default())
            .await
            .unwrap_err();
        assert!(err.to_string().starts_with("RemoveImage:"), "{err}");
        assert_eq!(removals(&h), 0);
    }

    #[tokio::test]
    async fn an_image_is_kept_while_any_container_uses_it() {
        let h = Harness::new().await;
        let (_, running) = h.running_app().await;
        let pod = h.run_pod("db").await;
        let created = h.create(&pod, "app").await;
        for reference in ["sha256:aaaa", "docker.io/library/busybox:1.36"] {
            let err = remove_image(&h.cri, request(reference)).await.unwrap_err();
            assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");
            assert!(err.to_string().contains("in use by container app"), "{err}");
        }
        assert_eq!(removals(&h), 0);
        assert!(h.mock.holds_image("sha256:aaaa"));
        // The exited container still holds it; only its removal frees it.
        h.mock.exit_container(&h.container_id_of(&running), 0);
        drop_container(&h, &created).await;
        assert!(remove_image(&h.cri, request("sha256:aaaa")).await.is_err());
        drop_container(&h, &running).await;
        remove_image(&h.cri, request("sha256:aaaa")).await.unwrap();
        assert!(!h.mock.holds_image("sha256:aaaa"));
    }

    #[tokio::test]
    async fn an_image_volume_keeps_its_image() {
        let h = Harness::new().await;
        let volume = ImageInfo {
            id: "sha256:cccc".into(),
            repo_tags: vec!["docker.io/library/data:1".into()],
            repo_digests: vec!["docker.io/library/data@sha256:dddd".into()],
            ..busybox()
        };
        let _ = h.mock.clone().with_registry_image(volume);
        pull_image(
            h.cri.runtime.as_ref(),
            PullImageRequest {
                image: Some(ImageSpec {
                    image: "docker.io/library/data:1".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let pod = h.run_pod("web").await;
        let mut create = container_request(&pod, "reader", 0);
        create.config.as_mut().unwrap().mounts.push(Mount {
            container_path: "/data".into(),
            readonly: true,
            image: Some(ImageSpec {
                image: "docker.io/library/data:1".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        let id = create_container::create_container(&h.cri, create)
            .await
            .unwrap()
            .container_id;
        start_container::start_container(
            &h.cri,
            berth_proto::cri::v1::StartContainerRequest {
                container_id: id.clone(),
            },
        )
        .await
        .unwrap();
        let err = remove_image(&h.cri, request("docker.io/library/data:1"))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("sha256:cccc is in use by container reader"),
            "{err}"
        );
        assert!(h.mock.holds_image("sha256:cccc"));
        drop_container(&h, &id).await;
        remove_image(&h.cri, request("docker.io/library/data:1"))
            .await
            .unwrap();
        assert!(!h.mock.holds_image("sha256:cccc"));
    }
}
