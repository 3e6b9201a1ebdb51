//! `ReopenContainerLog`.

use berth_proto::cri::v1::{ReopenContainerLogRequest, ReopenContainerLogResponse};
use runtimes::types::ContainerState;
use runtimes::{Error, Runtime};

use super::shared::container::observe;
use super::shared::objects::resolve;
use super::Cri;
use crate::store::ContainerRecord;

const METHOD: &str = "ReopenContainerLog";

/// Makes the container's log writer reopen its file (kubelet rotated it). Only a
/// running container has a log writer, as containerd.
pub(super) async fn reopen_container_log(
    cri: &Cri,
    request: ReopenContainerLogRequest,
) -> runtimes::Result<ReopenContainerLogResponse> {
    let record: ContainerRecord = resolve(&cri.store, METHOD, &request.container_id)?;
    let state = observe(cri, &record).await.state;
    if state != ContainerState::Running {
        return Err(Error::FailedPrecondition(format!(
            "{METHOD}: container {} ({}) is not running",
            record.id, record.container_id
        )));
    }
    cri.runtime
        .reopen_container_log(&record.container_id)
        .await?;
    Ok(ReopenContainerLogResponse {})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::testing::Harness;

    fn request(id: &str) -> ReopenContainerLogRequest {
        ReopenContainerLogRequest {
            container_id: id.into(),
        }
    }

    #[tokio::test]
    async fn reopens_the_log_of_a_running_container_only() {
        let h = Harness::new().await;
        let pod = h.run_pod("web").await;
        let running = h.start(&pod, "a").await;
        reopen_container_log(&h.cri, request(&running))
            .await
            .unwrap();
        assert!(h.called("reopen_container_log"));
        let created = h.create(&pod, "b").await;
        let err = reopen_container_log(&h.cri, request(&created))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");
        assert!(err.to_string().contains(&created), "{err}");
        assert!(reopen_container_log(&h.cri, request("no-such-container"))
            .await
            .unwrap_err()
            .is_not_found());
    }
}
