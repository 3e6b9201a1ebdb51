//! The `Stream*` listings (KEP-5825, Kubernetes 1.36+): the items of the matching
//! `List*` answer, sent in batches so no message nears gRPC's size limit on a node
//! with many pods. Each item goes out once; no items, no message; the stream ends
//! with the last batch (kubelet collects the whole stream before it acts).

use std::pin::Pin;

use futures::Stream;
use tonic::Status;

/// Items per message: a container with its labels and annotations is well under
/// 4 KiB, so a batch stays far below the 4 MiB default message limit.
pub(in crate::cri) const BATCH: usize = 256;

/// A listing as a stream of batches.
pub type BatchStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// `items` in batches of [`BATCH`], each wrapped by `message`.
pub(in crate::cri) fn batches<I, T>(items: Vec<I>, message: fn(Vec<I>) -> T) -> BatchStream<T>
where
    I: Send + 'static,
    T: Send + 'static,
{
    let mut items = items.into_iter().peekable();
    let mut out = Vec::new();
    while items.peek().is_some() {
        out.push(Ok(message(items.by_ref().take(BATCH).collect())));
    }
    Box::pin(futures::stream::iter(out))
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[tokio::test]
    async fn every_item_once_in_batches_and_none_for_nothing() {
        let sent: Vec<Vec<usize>> = batches((0..BATCH * 2 + 1).collect(), |b| b)
            .map(|m| m.unwrap())
            .collect()
            .await;
        assert_eq!(
            sent.iter().map(Vec::len).collect::<Vec<_>>(),
            [BATCH, BATCH, 1]
        );
        assert!(sent.concat().into_iter().eq(0..BATCH * 2 + 1));
        assert_eq!(batches(Vec::<usize>::new(), |b| b).count().await, 0);
    }
}
