//! What the image verbs share: the image a request names, and `ImageInfo` as CRI's
//! `Image`.

use std::collections::BTreeMap;

use berth_proto::cri::v1::{Image, ImageSpec, Int64Value};
use runtimes::types::ImageInfo;
use serde_json::json;

use crate::telemetry::{self, CallField};

/// The image reference, digest or id the request's `ImageSpec` names, recorded on the
/// call's span. Missing or blank is `InvalidSpec`, naming the verb.
pub(in crate::cri) fn requested_image<'a>(
    method: &str,
    spec: Option<&'a ImageSpec>,
) -> runtimes::Result<&'a str> {
    let image = spec.map(|s| s.image.as_str()).unwrap_or_default();
    if image.trim().is_empty() {
        return Err(runtimes::Error::InvalidSpec(format!(
            "{method}: image.image is empty; name the image by reference, digest or id"
        )));
    }
    telemetry::record(CallField::Image, image);
    Ok(image)
}

/// `info` as CRI reports it. The answer does not depend on the name the image was
/// asked by (critest compares the status by id, tag and digest for equality), so the
/// spec names the image by id and leaves `user_specified_image` empty, as containerd.
pub(in crate::cri) fn to_cri_image(info: ImageInfo) -> Image {
    let (uid, username) = info.config.uid_and_username();
    Image {
        spec: Some(ImageSpec {
            image: info.id.clone(),
            ..ImageSpec::default()
        }),
        id: info.id,
        repo_tags: info.repo_tags,
        repo_digests: info.repo_digests,
        size: info.size,
        uid: uid.map(|value| Int64Value { value }),
        username,
        pinned: info.pinned,
    }
}

/// `ImageStatus{verbose}`'s `info["info"]`: the image config in OCI's JSON layout
/// under `imageSpec`, as containerd shows it, plus the image id.
pub(in crate::cri) fn verbose_info(info: &ImageInfo) -> String {
    let c = &info.config;
    // OCI writes these two as objects whose keys are the values.
    fn as_set(keys: &[String]) -> BTreeMap<&str, serde_json::Value> {
        keys.iter().map(|k| (k.as_str(), json!({}))).collect()
    }
    json!({
        "id": info.id,
        "pinned": info.pinned,
        "imageSpec": {
            "os": c.os,
            "architecture": c.architecture,
            "config": {
                "User": c.user,
                "Env": c.env,
                "Entrypoint": c.entrypoint,
                "Cmd": c.cmd,
                "WorkingDir": c.working_dir,
                "Labels": c.labels,
                "StopSignal": c.stop_signal,
                "ExposedPorts": as_set(&c.exposed_ports),
                "Volumes": as_set(&c.volumes),
            },
        },
    })
    .to_string()
}

#[cfg(test)]
pub(in crate::cri) mod tests {
    use runtimes::mock::MockRuntime;
    use runtimes::types::{ImageConfig, PullRequest};
    use runtimes::Runtime;

    use super::*;

    /// A mock backend that has pulled `images`.
    pub(crate) async fn holding(images: Vec<ImageInfo>) -> MockRuntime {
        let mut mock = MockRuntime::new("mock", &["linux"]);
        for image in &images {
            mock = mock.with_registry_image(image.clone());
        }
        for image in images {
            let pull = PullRequest {
                reference: image.id,
                auth: None,
            };
            mock.pull_image(&pull).await.unwrap();
        }
        mock
    }

    /// A busybox-like image with a named user.
    pub(crate) fn busybox() -> ImageInfo {
        ImageInfo {
            id: "sha256:aaaa".into(),
            repo_tags: vec!["docker.io/library/busybox:1.36".into()],
            repo_digests: vec!["docker.io/library/busybox@sha256:bbbb".into()],
            size: 2_000_000,
            config: ImageConfig {
                os: "linux".into(),
                architecture: "amd64".into(),
                user: "nobody".into(),
                env: vec!["PATH=/bin".into()],
                cmd: vec!["sh".into()],
                exposed_ports: vec!["80/tcp".into()],
                ..ImageConfig::default()
            },
            pinned: false,
        }
    }

    #[test]
    fn blank_or_missing_specs_are_invalid_and_name_the_verb() {
        for spec in [
            None,
            Some(ImageSpec::default()),
            Some(ImageSpec {
                image: "  ".into(),
                ..Default::default()
            }),
        ] {
            let err = requested_image("PullImage", spec.as_ref()).unwrap_err();
            assert!(matches!(err, runtimes::Error::InvalidSpec(_)));
            assert!(err
                .to_string()
                .starts_with("PullImage: image.image is empty"));
        }
        let spec = ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        };
        assert_eq!(
            requested_image("PullImage", Some(&spec)).unwrap(),
            "busybox"
        );
    }

    #[test]
    fn maps_every_field_of_an_image() {
        let image = to_cri_image(busybox());
        assert_eq!(image.id, "sha256:aaaa");
        assert_eq!(image.repo_tags, ["docker.io/library/busybox:1.36"]);
        assert_eq!(
            image.repo_digests,
            ["docker.io/library/busybox@sha256:bbbb"]
        );
        assert_eq!(image.size, 2_000_000);
        assert_eq!(image.uid, None);
        assert_eq!(image.username, "nobody");
        assert!(!image.pinned);
        let spec = image.spec.unwrap();
        assert_eq!(spec.image, "sha256:aaaa");
        assert_eq!(spec.user_specified_image, "");
    }

    #[test]
    fn numeric_and_missing_users_become_uids() {
        let mut info = busybox();
        info.config.user = "1000:1000".into();
        let image = to_cri_image(info.clone());
        assert_eq!(
            (image.uid.map(|u| u.value), image.username.as_str()),
            (Some(1000), "")
        );
        info.config.user.clear();
        info.pinned = true;
        let image = to_cri_image(info);
        assert_eq!(image.uid.map(|u| u.value), Some(0));
        assert!(image.pinned);
        assert_eq!(image.spec.unwrap().user_specified_image, "");
    }

    #[test]
    fn verbose_info_is_the_oci_config() {
        let value: serde_json::Value = serde_json::from_str(&verbose_info(&busybox())).unwrap();
        assert_eq!(value["id"], "sha256:aaaa");
        let spec = &value["imageSpec"];
        assert_eq!(spec["os"], "linux");
        assert_eq!(spec["architecture"], "amd64");
        assert_eq!(spec["config"]["User"], "nobody");
        assert_eq!(spec["config"]["Cmd"], json!(["sh"]));
        assert_eq!(spec["config"]["ExposedPorts"], json!({"80/tcp": {}}));
        assert_eq!(spec["config"]["Volumes"], json!({}));
    }
}
