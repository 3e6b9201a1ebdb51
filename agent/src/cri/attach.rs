//! `Attach`: checks the request and answers the streaming server's URL for it.

use berth_proto::cri::v1::{AttachRequest, AttachResponse};
use runtimes::types::{AttachRequest as Attach, StdioRequest};

use super::shared::container::require_running;
use super::shared::objects::{in_method, resolve};
use super::Cri;
use crate::store::ContainerRecord;
use crate::streaming::validate_stdio;

const METHOD: &str = "Attach";

/// The URL for attaching to a running container's stdio: unknown → `NotFound`, not
/// running → `FailedPrecondition`, no stream (or a terminal with stderr) →
/// `InvalidArgument`.
pub(super) async fn attach(cri: &Cri, request: AttachRequest) -> runtimes::Result<AttachResponse> {
    let record: ContainerRecord = resolve(&cri.store, METHOD, &request.container_id)?;
    require_running(cri, METHOD, &record).await?;
    let stdio = StdioRequest {
        tty: request.tty,
        stdin: request.stdin,
        stdout: request.stdout,
        stderr: request.stderr,
    };
    validate_stdio(&stdio).map_err(|e| in_method(METHOD, e))?;
    let url = cri
        .streaming(METHOD)?
        .get_attach_url(&record.container_id, Attach { stdio })?;
    Ok(AttachResponse { url })
}

#[cfg(test)]
mod tests {
    use runtimes::Error;

    use super::*;
    use crate::cri::testing::Harness;

    fn request(id: &str, tty: bool, stderr: bool) -> AttachRequest {
        AttachRequest {
            container_id: id.into(),
            stdin: true,
            tty,
            stdout: true,
            stderr,
        }
    }

    #[tokio::test]
    async fn answers_an_attach_url_and_refuses_what_kubelet_refuses() {
        let h = Harness::with_streaming().await;
        let (pod, id) = h.running_app().await;
        let url = attach(&h.cri, request(&id, false, true)).await.unwrap().url;
        assert!(
            url.starts_with(&format!("{}/attach/", h.streaming_base())),
            "{url}"
        );
        let unknown = attach(&h.cri, request("no-such-container", false, true))
            .await
            .unwrap_err();
        assert!(unknown.is_not_found(), "{unknown:?}");
        let created = h.create(&pod, "idle").await;
        let not_running = attach(&h.cri, request(&created, false, true))
            .await
            .unwrap_err();
        assert!(
            matches!(not_running, Error::FailedPrecondition(_)),
            "{not_running:?}"
        );
        let tty_stderr = attach(&h.cri, request(&id, true, true)).await.unwrap_err();
        assert!(
            matches!(tty_stderr, Error::InvalidSpec(_)),
            "{tty_stderr:?}"
        );
        let nothing = AttachRequest {
            container_id: id,
            ..AttachRequest::default()
        };
        let nothing = attach(&h.cri, nothing).await.unwrap_err();
        assert!(matches!(nothing, Error::InvalidSpec(_)), "{nothing:?}");
    }
}
