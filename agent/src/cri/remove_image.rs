//! `RemoveImage`.

use berth_proto::cri::v1::{RemoveImageRequest, RemoveImageResponse};
use runtimes::Runtime;

use super::shared::image::requested_image;

/// Removes the image; removing an absent image succeeds (the runtime guarantees it).
pub(super) async fn remove_image(
    runtime: &dyn Runtime,
    request: RemoveImageRequest,
) -> runtimes::Result<RemoveImageResponse> {
    let reference = requested_image("RemoveImage", request.image.as_ref())?;
    runtime.remove_image(reference).await?;
    Ok(RemoveImageResponse {})
}

#[cfg(test)]
mod tests {
    use berth_proto::cri::v1::ImageSpec;
    use runtimes::mock::MockRuntime;

    use super::*;
    use crate::cri::shared::image::tests::{busybox, holding};

    fn request(image: &str) -> RemoveImageRequest {
        RemoveImageRequest {
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
        }
    }

    #[tokio::test]
    async fn removes_and_is_idempotent() {
        let runtime = holding(vec![busybox()]).await;
        remove_image(&runtime, request("sha256:aaaa"))
            .await
            .unwrap();
        assert!(!runtime.holds_image("sha256:aaaa"));
        remove_image(&runtime, request("sha256:aaaa"))
            .await
            .unwrap();
        let removals = runtime
            .calls()
            .into_iter()
            .filter(|c| c.operation == "remove_image" && c.target == "sha256:aaaa")
            .count();
        assert_eq!(removals, 2);
    }

    #[tokio::test]
    async fn an_empty_image_is_invalid() {
        let runtime = MockRuntime::new("mock", &["linux"]);
        let err = remove_image(&runtime, RemoveImageRequest::default())
            .await
            .unwrap_err();
        assert!(err.to_string().starts_with("RemoveImage:"), "{err}");
        assert!(runtime.calls().is_empty());
    }
}
