//! `ImageFsInfo`.

use std::time::UNIX_EPOCH;

use berth_proto::cri::v1::{
    FilesystemIdentifier, FilesystemUsage, ImageFsInfoRequest, ImageFsInfoResponse, UInt64Value,
};
use runtimes::types::FsUsage;
use runtimes::Runtime;

/// Usage of the filesystems holding images. Containers' writable layers live on the
/// same filesystems until the container verbs exist, so both lists are the same.
pub(super) async fn image_fs_info(
    runtime: &dyn Runtime,
    _request: ImageFsInfoRequest,
) -> runtimes::Result<ImageFsInfoResponse> {
    let filesystems: Vec<_> = runtime
        .image_fs_info()
        .await?
        .into_iter()
        .map(to_cri)
        .collect();
    Ok(ImageFsInfoResponse {
        container_filesystems: filesystems.clone(),
        image_filesystems: filesystems,
    })
}

fn to_cri(usage: FsUsage) -> FilesystemUsage {
    // Nanoseconds since the epoch; a clock before 1970 reads as 0.
    let timestamp = usage
        .timestamp
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    FilesystemUsage {
        timestamp,
        fs_id: Some(FilesystemIdentifier {
            mountpoint: usage.mountpoint.to_string_lossy().into_owned(),
        }),
        used_bytes: Some(UInt64Value {
            value: usage.used_bytes,
        }),
        inodes_used: Some(UInt64Value {
            value: usage.inodes_used,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use runtimes::mock::MockRuntime;

    use super::*;
    use crate::cri::shared::image::tests::{busybox, holding};

    #[tokio::test]
    async fn reports_the_runtime_usage_for_images_and_containers() {
        let runtime = holding(vec![busybox()]).await;
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let answer = image_fs_info(&runtime, ImageFsInfoRequest {})
            .await
            .unwrap();
        assert_eq!(answer.image_filesystems, answer.container_filesystems);
        let fs = &answer.image_filesystems[0];
        assert!(
            u128::try_from(fs.timestamp).unwrap() >= before.as_nanos(),
            "{fs:?}"
        );
        assert_eq!(fs.fs_id.as_ref().unwrap().mountpoint, "/mock/mock");
        assert_eq!(fs.used_bytes.unwrap().value, busybox().size);
        assert_eq!(fs.inodes_used.unwrap().value, 1);
    }

    #[tokio::test]
    async fn runtime_errors_pass_through() {
        let runtime = MockRuntime::new("mock", &["linux"]);
        runtime.fail("image_fs_info", || {
            runtimes::Error::backend("mock", "disk gone")
        });
        let err = image_fs_info(&runtime, ImageFsInfoRequest {})
            .await
            .unwrap_err();
        assert!(err.to_string().contains("disk gone"));
    }
}
