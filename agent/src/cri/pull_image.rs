//! `PullImage`.

use std::time::Instant;

use berth_proto::cri::v1::{AuthConfig, PullImageRequest, PullImageResponse};
use runtimes::types::{PullRequest, RegistryAuth};
use runtimes::Runtime;

use super::shared::image::requested_image;
use crate::telemetry::{metrics, PullFailure};

/// Pulls the image and answers with its id, as containerd does.
pub(super) async fn pull_image(
    runtime: &dyn Runtime,
    request: PullImageRequest,
) -> runtimes::Result<PullImageResponse> {
    let pull = parse(request)?;
    let started = Instant::now();
    let pulled = runtime.pull_image(&pull).await;
    metrics().pull_ended(
        pulled.as_ref().map(|i| i.size).map_err(failure),
        started.elapsed(),
    );
    Ok(PullImageResponse {
        image_ref: pulled?.id,
    })
}

/// How a pull failed, for `berth_image_pull_failures_total`: what an operator acts
/// on (a missing image, credentials, a registry down, …).
fn failure(err: &runtimes::Error) -> PullFailure {
    use runtimes::Error::*;
    let code = crate::status::code(err);
    let reason = match err {
        WrongPlatform { .. } => "wrong_platform",
        Io { .. } => "local_io",
        _ => match code {
            tonic::Code::NotFound => "not_found",
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => "unauthorized",
            tonic::Code::Unavailable => "unreachable",
            tonic::Code::DeadlineExceeded => "timeout",
            tonic::Code::DataLoss => "corrupt",
            tonic::Code::InvalidArgument => "invalid_reference",
            tonic::Code::Cancelled => "cancelled",
            tonic::Code::ResourceExhausted => "no_space",
            _ => "other",
        },
    };
    PullFailure { code, reason }
}

/// The request as the runtime takes it.
fn parse(request: PullImageRequest) -> runtimes::Result<PullRequest> {
    let reference = requested_image("PullImage", request.image.as_ref())?.to_string();
    Ok(PullRequest {
        reference,
        auth: request.auth.and_then(registry_auth),
    })
}

/// The request's credentials; an `AuthConfig` without any is no credentials, so the
/// configured ones apply. `server_address` only says which registry kubelet picked
/// them for, which is the image's own.
fn registry_auth(auth: AuthConfig) -> Option<RegistryAuth> {
    let auth = RegistryAuth {
        username: auth.username,
        password: auth.password,
        auth: auth.auth,
        identity_token: auth.identity_token,
        registry_token: auth.registry_token,
    };
    (auth != RegistryAuth::default()).then_some(auth)
}

#[cfg(test)]
mod tests {
    use berth_proto::cri::v1::ImageSpec;
    use runtimes::mock::MockRuntime;

    use super::*;
    use crate::cri::shared::image::tests::busybox;

    fn request(image: &str, auth: Option<AuthConfig>) -> PullImageRequest {
        PullImageRequest {
            image: Some(ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            auth,
            sandbox_config: None,
        }
    }

    #[tokio::test]
    async fn answers_the_image_id() {
        let runtime = MockRuntime::new("mock", &["linux"]).with_registry_image(busybox());
        let answer = pull_image(&runtime, request("docker.io/library/busybox:1.36", None))
            .await
            .unwrap();
        assert_eq!(answer.image_ref, "sha256:aaaa");
        assert!(runtime.holds_image("sha256:aaaa"));
        assert_eq!(
            runtime.call_summary(),
            [(
                "mock".into(),
                "pull_image",
                "docker.io/library/busybox:1.36".into()
            )]
        );
    }

    #[test]
    fn passes_the_request_credentials() {
        let auth = AuthConfig {
            username: "u".into(),
            password: "p".into(),
            server_address: "docker.io".into(),
            ..Default::default()
        };
        let parsed = parse(request("busybox", Some(auth))).unwrap();
        assert_eq!(parsed.reference, "busybox");
        let auth = parsed.auth.unwrap();
        assert_eq!((auth.username.as_str(), auth.password.as_str()), ("u", "p"));
    }

    #[test]
    fn empty_credentials_are_none() {
        let parsed = parse(request("busybox", Some(AuthConfig::default()))).unwrap();
        assert_eq!(parsed.auth, None);
        let token = AuthConfig {
            registry_token: "t".into(),
            ..Default::default()
        };
        let parsed = parse(request("busybox", Some(token))).unwrap();
        assert_eq!(parsed.auth.unwrap().registry_token, "t");
    }

    #[test]
    fn failures_have_reasons_an_operator_acts_on() {
        let reason = |e: runtimes::Error| failure(&e).reason;
        assert_eq!(
            reason(runtimes::Error::not_found("image", "x")),
            "not_found"
        );
        let refused = runtimes::Error::Unauthenticated {
            service: "registry r".into(),
            message: "denied".into(),
        };
        assert_eq!(failure(&refused).code, tonic::Code::Unauthenticated);
        assert_eq!(reason(refused), "unauthorized");
        let down = runtimes::Error::Unavailable {
            service: "registry r".into(),
            message: "refused".into(),
        };
        assert_eq!(reason(down), "unreachable");
        let io = runtimes::Error::io("writing a layer", std::io::ErrorKind::Other.into());
        assert_eq!(reason(io), "local_io");
    }

    #[tokio::test]
    async fn an_empty_image_is_invalid_and_never_reaches_the_runtime() {
        let runtime = MockRuntime::new("mock", &["linux"]);
        let err = pull_image(&runtime, request("", None)).await.unwrap_err();
        assert!(matches!(err, runtimes::Error::InvalidSpec(_)), "{err:?}");
        assert!(runtime.calls().is_empty());
    }

    #[tokio::test]
    async fn runtime_errors_pass_through() {
        let runtime = MockRuntime::new("mock", &["linux"]);
        runtime.fail("pull_image", || runtimes::Error::Unauthenticated {
            service: "registry r.example".into(),
            message: "401".into(),
        });
        let err = pull_image(&runtime, request("r.example/x:1", None))
            .await
            .unwrap_err();
        assert!(
            matches!(err, runtimes::Error::Unauthenticated { .. }),
            "{err:?}"
        );
    }
}
