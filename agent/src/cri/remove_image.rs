//! `RemoveImage`.

use k8s_cri::v1::{RemoveImageRequest, RemoveImageResponse};
use runtimes::Runtime;

use super::image::requested_image;

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
    use k8s_cri::v1::ImageSpec;

    use super::*;
    use crate::cri::fake::FakeRuntime;
    use crate::cri::image::tests::busybox;

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
        let runtime = FakeRuntime::with_images(vec![busybox()]);
        remove_image(&runtime, request("sha256:aaaa"))
            .await
            .unwrap();
        remove_image(&runtime, request("sha256:aaaa"))
            .await
            .unwrap();
        assert!(runtime.images.lock().unwrap().is_empty());
        assert_eq!(
            *runtime.removed.lock().unwrap(),
            ["sha256:aaaa", "sha256:aaaa"]
        );
    }

    #[tokio::test]
    async fn an_empty_image_is_invalid() {
        let runtime = FakeRuntime::default();
        let err = remove_image(&runtime, RemoveImageRequest::default())
            .await
            .unwrap_err();
        assert!(err.to_string().starts_with("RemoveImage:"), "{err}");
        assert!(runtime.removed.lock().unwrap().is_empty());
    }
}
