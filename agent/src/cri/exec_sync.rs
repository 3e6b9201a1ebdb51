//! `ExecSync`.

use std::time::Duration;

use berth_proto::cri::v1::{ExecSyncRequest, ExecSyncResponse};
use runtimes::types::ExecRequest;
use runtimes::{Error, Runtime};

use super::shared::objects::resolve;
use super::Cri;
use crate::store::ContainerRecord;

const METHOD: &str = "ExecSync";

/// CRI's cap on each of stdout and stderr (CVE-2022-1708): the rest is dropped.
const OUTPUT_CAP: usize = 16 << 20;

/// How long past the request's timeout the agent waits for the backend, which kills
/// a timed-out command itself, before giving up on it.
const BACKEND_GRACE: Duration = Duration::from_secs(10);

/// Runs the command in the container and waits for it. With a timeout (seconds, 0 =
/// none) the backend kills the command, never the container, and the call fails with
/// `DeadlineExceeded`, which kubelet and critest read as "timed out". A non-zero exit
/// is an answer, not an error.
pub(super) async fn exec_sync(
    cri: &Cri,
    request: ExecSyncRequest,
) -> runtimes::Result<ExecSyncResponse> {
    let record: ContainerRecord = resolve(&cri.store, METHOD, &request.container_id)?;
    if request.cmd.is_empty() {
        return Err(Error::InvalidSpec(format!("{METHOD}: cmd is empty")));
    }
    let timeout = u64::try_from(request.timeout)
        .ok()
        .filter(|&s| s > 0)
        .map(Duration::from_secs);
    let exec = ExecRequest {
        cmd: request.cmd,
        timeout,
    };
    let run = cri.runtime.exec_sync(&record.container_id, &exec);
    let output = match timeout {
        None => run.await?,
        // A guard against a backend that does not honour the timeout: the caller gets
        // its answer, though the command may outlive it (the backend's to kill).
        Some(limit) => tokio::time::timeout(limit + BACKEND_GRACE, run)
            .await
            .map_err(|_| Error::DeadlineExceeded {
                operation: format!(
                    "{METHOD} {:?} in container {} ({})",
                    exec.cmd, record.id, record.container_id
                ),
                after: limit,
            })??,
    };
    Ok(ExecSyncResponse {
        stdout: capped(output.stdout),
        stderr: capped(output.stderr),
        exit_code: output.exit_code,
    })
}

fn capped(mut bytes: Vec<u8>) -> Vec<u8> {
    bytes.truncate(OUTPUT_CAP);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::testing::Harness;

    fn request(id: &str, cmd: &[&str], timeout: i64) -> ExecSyncRequest {
        ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout,
        }
    }

    #[tokio::test]
    async fn runs_a_command_with_its_timeout() {
        let h = Harness::new().await;
        let (_, id) = h.running_app().await;
        let out = exec_sync(&h.cri, request(&id, &["echo", "hello"], 5))
            .await
            .unwrap();
        assert_eq!(out.stdout, b"echo hello");
        assert_eq!(out.exit_code, 0);
        assert!(out.stderr.is_empty());
    }

    #[tokio::test]
    async fn a_timed_out_command_is_deadline_exceeded_and_the_container_keeps_running() {
        let h = Harness::new().await;
        let (_, id) = h.running_app().await;
        h.mock.fail("exec_sync", || Error::DeadlineExceeded {
            operation: "exec of sleep 10".into(),
            after: Duration::from_secs(1),
        });
        let err = exec_sync(&h.cri, request(&id, &["sleep", "10"], 1))
            .await
            .unwrap_err();
        let status = crate::status::from_runtime(err);
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
        let cid = h.container_id_of(&id);
        assert_eq!(
            h.mock.container_state(&cid),
            Some(runtimes::types::ContainerState::Running)
        );
    }

    #[tokio::test]
    async fn bad_requests_are_refused() {
        let h = Harness::new().await;
        let (pod, id) = h.running_app().await;
        let empty = exec_sync(&h.cri, request(&id, &[], 0)).await.unwrap_err();
        assert!(matches!(empty, Error::InvalidSpec(_)), "{empty:?}");
        let unknown = exec_sync(&h.cri, request("no-such-container", &["true"], 0))
            .await
            .unwrap_err();
        assert!(unknown.is_not_found());
        let created = h.create(&pod, "idle").await;
        let not_running = exec_sync(&h.cri, request(&created, &["true"], 0))
            .await
            .unwrap_err();
        assert!(
            matches!(not_running, Error::FailedPrecondition(_)),
            "{not_running:?}"
        );
    }

    #[test]
    fn output_is_capped_at_16_mib() {
        assert_eq!(capped(vec![1; OUTPUT_CAP + 10]).len(), OUTPUT_CAP);
        assert_eq!(capped(vec![1; 3]).len(), 3);
    }
}
