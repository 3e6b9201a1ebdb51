//! The `Stream*` verbs (KEP-5825): the items of their `List*` twin's answer, in
//! batches ([`batches`]). A failed listing fails the call before any message.

use tonic::{Response, Status};

use crate::cri::shared::batches::{batches, BatchStream};
use crate::status::answer;

/// The answer of a `Stream*` verb whose `List*` twin answered `listed`: the items
/// `items` takes out of it, each batch wrapped by `message`.
pub(super) fn streamed<L, I, T>(
    listed: runtimes::Result<L>,
    items: fn(L) -> Vec<I>,
    message: fn(Vec<I>) -> T,
) -> Result<Response<BatchStream<T>>, Status>
where
    I: Send + 'static,
    T: Send + 'static,
{
    let all = answer(listed)?.into_inner();
    Ok(Response::new(batches(items(all), message)))
}

#[cfg(test)]
mod tests {
    use berth_proto::cri::v1::runtime_service_server::RuntimeService;
    use berth_proto::cri::v1::{
        PodSandboxFilter, PodSandboxStateValue, StreamContainersRequest,
        StreamPodSandboxMetricsRequest, StreamPodSandboxesRequest,
    };
    use futures::StreamExt;
    use tonic::Request;

    use super::*;
    use crate::cri::shared::batches::BATCH;
    use crate::cri::shared::testing::{sorted, Harness};

    #[tokio::test]
    async fn a_failed_listing_fails_the_call() {
        let err = streamed::<Vec<u8>, u8, Vec<u8>>(
            Err(runtimes::Error::InvalidSpec("bad filter".into())),
            |all| all,
            |batch| batch,
        )
        .err()
        .unwrap();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
    }

    #[tokio::test]
    async fn every_item_once_in_batches() {
        let answer = streamed(Ok((0..BATCH + 3).collect::<Vec<_>>()), |all| all, |b| b).unwrap();
        let sent: Vec<Vec<usize>> = answer.into_inner().map(|m| m.unwrap()).collect().await;
        assert_eq!(sent.iter().map(Vec::len).collect::<Vec<_>>(), [BATCH, 3]);
    }

    #[tokio::test]
    async fn the_runtime_verbs_stream_what_their_lists_answer_filtered() {
        let h = Harness::new().await;
        let (web, app) = h.running_app().await;
        let db = h.run_pod("db").await;
        let pods = h
            .cri
            .stream_pod_sandboxes(Request::new(StreamPodSandboxesRequest { filter: None }))
            .await
            .unwrap()
            .into_inner()
            .map(|m| m.unwrap().pod_sandboxes)
            .concat()
            .await;
        assert_eq!(
            sorted(pods.into_iter().map(|p| p.id)),
            sorted([web.clone(), db.clone()])
        );
        let ready_db = StreamPodSandboxesRequest {
            filter: Some(PodSandboxFilter {
                id: db.clone(),
                state: Some(PodSandboxStateValue { state: 0 }),
                ..Default::default()
            }),
        };
        let filtered = h
            .cri
            .stream_pod_sandboxes(Request::new(ready_db))
            .await
            .unwrap()
            .into_inner()
            .map(|m| m.unwrap().pod_sandboxes)
            .concat()
            .await;
        assert_eq!(filtered.into_iter().map(|p| p.id).collect::<Vec<_>>(), [db]);
        let containers = h
            .cri
            .stream_containers(Request::new(StreamContainersRequest { filter: None }))
            .await
            .unwrap()
            .into_inner()
            .map(|m| m.unwrap().containers)
            .concat()
            .await;
        assert_eq!(
            containers.into_iter().map(|c| c.id).collect::<Vec<_>>(),
            [app]
        );
        // No filter in this request: the listing is whole (the mock has no metrics).
        let metrics = h
            .cri
            .stream_pod_sandbox_metrics(Request::new(StreamPodSandboxMetricsRequest {}))
            .await;
        assert!(metrics.is_ok());
    }
}
