//! `ListImages`.

use berth_proto::cri::v1::{ListImagesRequest, ListImagesResponse};
use runtimes::Runtime;

use super::shared::image::{requested_image, to_cri_image};

/// Every image, or the one the filter names. The runtime resolves the filter's
/// reference as `ImageStatus` does (tag, digest or id, normalized), so a filter matches
/// exactly the images `ImageStatus` would describe.
pub(super) async fn list_images(
    runtime: &dyn Runtime,
    request: ListImagesRequest,
) -> runtimes::Result<ListImagesResponse> {
    let filter = request.filter.and_then(|f| f.image);
    let images = match filter.as_ref().filter(|spec| !spec.image.is_empty()) {
        Some(spec) => {
            let reference = requested_image("ListImages", Some(spec))?;
            let found = runtime.image_status(reference).await?;
            found.map(to_cri_image).into_iter().collect()
        }
        None => runtime
            .list_images()
            .await?
            .into_iter()
            .map(to_cri_image)
            .collect(),
    };
    Ok(ListImagesResponse { images })
}

#[cfg(test)]
mod tests {
    use berth_proto::cri::v1::{ImageFilter, ImageSpec};
    use runtimes::mock::MockRuntime;
    use runtimes::types::{ImageConfig, ImageInfo};

    use super::*;
    use crate::cri::shared::image::tests::{busybox, holding};

    fn filtered(image: &str) -> ListImagesRequest {
        ListImagesRequest {
            filter: Some(ImageFilter {
                image: Some(ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
            }),
        }
    }

    async fn runtime() -> MockRuntime {
        let pause = ImageInfo {
            id: "sha256:cccc".into(),
            repo_tags: vec!["registry.k8s.io/pause:3.9".into()],
            pinned: true,
            config: ImageConfig {
                os: "linux".into(),
                ..ImageConfig::default()
            },
            ..ImageInfo::default()
        };
        holding(vec![busybox(), pause]).await
    }

    fn ids(answer: &ListImagesResponse) -> Vec<&str> {
        answer.images.iter().map(|i| i.id.as_str()).collect()
    }

    #[tokio::test]
    async fn without_a_filter_lists_everything() {
        let runtime = runtime().await;
        let all = list_images(&runtime, ListImagesRequest::default())
            .await
            .unwrap();
        assert_eq!(ids(&all), ["sha256:aaaa", "sha256:cccc"]);
        let empty_filter = list_images(&runtime, filtered("")).await.unwrap();
        assert_eq!(ids(&empty_filter), ids(&all));
    }

    #[tokio::test]
    async fn a_filter_matches_by_tag_digest_or_id() {
        let runtime = runtime().await;
        for name in ["registry.k8s.io/pause:3.9", "sha256:cccc"] {
            let answer = list_images(&runtime, filtered(name)).await.unwrap();
            assert_eq!(ids(&answer), ["sha256:cccc"], "{name}");
            assert!(answer.images[0].pinned);
        }
        let digest = "docker.io/library/busybox@sha256:bbbb";
        let answer = list_images(&runtime, filtered(digest)).await.unwrap();
        assert_eq!(ids(&answer), ["sha256:aaaa"]);
        let none = list_images(&runtime, filtered("nginx")).await.unwrap();
        assert!(none.images.is_empty());
    }
}
