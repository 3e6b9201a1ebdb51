//! `ImageStatus`.

use std::collections::HashMap;

use berth_proto::cri::v1::{ImageStatusRequest, ImageStatusResponse};
use runtimes::Runtime;

use super::shared::image::{requested_image, to_cri_image, verbose_info};

/// Describes the image; an unknown image is an empty answer, not an error (kubelet
/// asks before it pulls).
pub(super) async fn image_status(
    runtime: &dyn Runtime,
    request: ImageStatusRequest,
) -> runtimes::Result<ImageStatusResponse> {
    let reference = requested_image("ImageStatus", request.image.as_ref())?;
    let Some(info) = runtime.image_status(reference).await? else {
        return Ok(ImageStatusResponse::default());
    };
    let info_map = if request.verbose {
        HashMap::from([("info".to_string(), verbose_info(&info))])
    } else {
        HashMap::new()
    };
    Ok(ImageStatusResponse {
        image: Some(to_cri_image(info)),
        info: info_map,
    })
}

#[cfg(test)]
mod tests {
    use berth_proto::cri::v1::ImageSpec;
    use runtimes::mock::MockRuntime;

    use super::*;
    use crate::cri::shared::image::tests::{busybox, holding};

    fn request(image: &str, verbose: bool) -> ImageStatusRequest {
        ImageStatusRequest {
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            verbose,
        }
    }

    #[tokio::test]
    async fn describes_a_known_image() {
        let runtime = holding(vec![busybox()]).await;
        let answer = image_status(&runtime, request("sha256:aaaa", false))
            .await
            .unwrap();
        let image = answer.image.unwrap();
        assert_eq!(image.repo_tags, ["docker.io/library/busybox:1.36"]);
        assert!(answer.info.is_empty());
        // The same answer whatever name the image is asked by.
        let by_tag = image_status(&runtime, request("docker.io/library/busybox:1.36", false))
            .await
            .unwrap();
        assert_eq!(by_tag.image, Some(image));
    }

    #[tokio::test]
    async fn verbose_adds_the_image_config() {
        let runtime = holding(vec![busybox()]).await;
        let reference = "docker.io/library/busybox:1.36";
        let answer = image_status(&runtime, request(reference, true))
            .await
            .unwrap();
        let info: serde_json::Value = serde_json::from_str(&answer.info["info"]).unwrap();
        assert_eq!(info["imageSpec"]["config"]["User"], "nobody");
    }

    #[tokio::test]
    async fn an_unknown_image_is_an_empty_answer() {
        let runtime = holding(vec![busybox()]).await;
        let answer = image_status(&runtime, request("nginx", true))
            .await
            .unwrap();
        assert_eq!(answer, ImageStatusResponse::default());
    }

    #[tokio::test]
    async fn an_empty_image_is_invalid() {
        let runtime = MockRuntime::new("mock", &["linux"]);
        let err = image_status(&runtime, request("", false))
            .await
            .unwrap_err();
        assert!(err.to_string().starts_with("ImageStatus:"), "{err}");
        assert!(runtime.calls().is_empty());
    }
}
