//! `Exec`: checks the request and answers the streaming server's URL for it; the
//! command starts when the client connects there.

use berth_proto::cri::v1::{ExecRequest, ExecResponse};
use runtimes::types::{ExecStreamRequest, StdioRequest};

use super::shared::container::require_running;
use super::shared::objects::{in_method, resolve};
use super::Cri;
use crate::store::ContainerRecord;
use crate::streaming::validate_exec;

const METHOD: &str = "Exec";

/// The URL for an interactive exec in a running container: unknown → `NotFound`, not
/// running → `FailedPrecondition`, no command or no stream (or a terminal with
/// stderr) → `InvalidArgument`.
pub(super) async fn exec(cri: &Cri, request: ExecRequest) -> runtimes::Result<ExecResponse> {
    let record: ContainerRecord = resolve(&cri.store, METHOD, &request.container_id)?;
    require_running(cri, METHOD, &record).await?;
    let exec = ExecStreamRequest {
        cmd: request.cmd,
        stdio: StdioRequest {
            tty: request.tty,
            stdin: request.stdin,
            stdout: request.stdout,
            stderr: request.stderr,
        },
    };
    validate_exec(&exec).map_err(|e| in_method(METHOD, e))?;
    let url = cri
        .streaming(METHOD)?
        .get_exec_url(&record.container_id, exec)?;
    Ok(ExecResponse { url })
}

#[cfg(test)]
mod tests {
    use runtimes::Error;

    use super::*;
    use crate::cri::testing::Harness;

    fn request(id: &str, stdout: bool) -> ExecRequest {
        ExecRequest {
            container_id: id.into(),
            cmd: vec!["sh".into()],
            stdout,
            ..ExecRequest::default()
        }
    }

    #[tokio::test]
    async fn answers_a_url_with_a_token_for_a_running_container() {
        let h = Harness::with_streaming().await;
        let (_, id) = h.running_app().await;
        let first = exec(&h.cri, request(&id, true)).await.unwrap().url;
        let second = exec(&h.cri, request(&id, true)).await.unwrap().url;
        let base = format!("{}/exec/", h.streaming_base());
        assert!(first.starts_with(&base), "{first}");
        assert_ne!(first, second, "each URL has a token of its own");
    }

    #[tokio::test]
    async fn bad_requests_are_refused_in_kubelets_order() {
        let h = Harness::with_streaming().await;
        let (pod, id) = h.running_app().await;
        let unknown = exec(&h.cri, request("no-such-container", true))
            .await
            .unwrap_err();
        assert!(unknown.is_not_found(), "{unknown:?}");
        let created = h.create(&pod, "idle").await;
        let not_running = exec(&h.cri, request(&created, true)).await.unwrap_err();
        assert!(
            matches!(not_running, Error::FailedPrecondition(_)),
            "{not_running:?}"
        );
        let no_stream = exec(&h.cri, request(&id, false)).await.unwrap_err();
        assert!(matches!(no_stream, Error::InvalidSpec(_)), "{no_stream:?}");
        assert!(no_stream.to_string().starts_with("Exec: "), "{no_stream}");
        let mut no_cmd = request(&id, true);
        no_cmd.cmd.clear();
        let no_cmd = exec(&h.cri, no_cmd).await.unwrap_err();
        assert!(matches!(no_cmd, Error::InvalidSpec(_)), "{no_cmd:?}");
    }

    #[tokio::test]
    async fn without_a_streaming_server_exec_is_unimplemented() {
        let h = Harness::new().await;
        let (_, id) = h.running_app().await;
        let err = exec(&h.cri, request(&id, true)).await.unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    }
}
