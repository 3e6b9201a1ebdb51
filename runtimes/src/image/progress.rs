//! How far a pull is: logged at a steady interval once it takes longer than a few
//! seconds, and summed over every pull for the agent's metrics ([`totals`]).

use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A pull is quiet for this long, then logs its progress this often.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

/// Bytes of layers downloaded by every pull since berth started.
static DOWNLOADED: AtomicU64 = AtomicU64::new(0);
/// Pulls running now.
static IN_PROGRESS: AtomicI64 = AtomicI64::new(0);

/// Every pull's progress together, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullTotals {
    /// Layer bytes downloaded since start (counted as they arrive).
    pub downloaded_bytes: u64,
    /// Pulls running now.
    pub in_progress: i64,
}

/// The totals now.
pub fn totals() -> PullTotals {
    PullTotals {
        downloaded_bytes: DOWNLOADED.load(Ordering::Relaxed),
        in_progress: IN_PROGRESS.load(Ordering::Relaxed),
    }
}

/// One pull's layers and bytes.
#[derive(Debug)]
pub(crate) struct Progress {
    layers_total: usize,
    bytes_total: u64,
    layers_done: AtomicUsize,
    bytes: AtomicU64,
    started: Instant,
}

impl Progress {
    /// A pull of `layers_total` layers of `bytes_total` compressed bytes (the
    /// layers already on disk count as done).
    pub(crate) fn new(layers_total: usize, bytes_total: u64) -> Self {
        Progress {
            layers_total,
            bytes_total,
            layers_done: AtomicUsize::new(0),
            bytes: AtomicU64::new(0),
            started: Instant::now(),
        }
    }

    /// `n` more bytes of a layer arrived.
    pub(crate) fn downloaded(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
        DOWNLOADED.fetch_add(n, Ordering::Relaxed);
    }

    /// A layer is unpacked; one already on disk counts its `skipped_bytes` too, so
    /// done bytes reach the total.
    pub(crate) fn layer_done(&self, skipped_bytes: u64) {
        self.layers_done.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(skipped_bytes, Ordering::Relaxed);
    }

    fn log(&self, image: &str) {
        let bytes = self.bytes.load(Ordering::Relaxed);
        let seconds = self.started.elapsed().as_secs_f64().max(0.001);
        tracing::info!(
            image,
            layers_done = self.layers_done.load(Ordering::Relaxed),
            layers = self.layers_total,
            bytes,
            total_bytes = self.bytes_total,
            mb_per_second = format!("{:.1}", bytes as f64 / seconds / 1e6),
            elapsed_seconds = seconds as u64,
            "pulling"
        );
    }
}

/// Runs `pull`, logging `progress` every [`PROGRESS_INTERVAL`] after the first, and
/// counting it among the pulls in progress meanwhile.
pub(crate) async fn reporting<F: Future>(image: &str, progress: &Progress, pull: F) -> F::Output {
    reporting_every(PROGRESS_INTERVAL, image, progress, pull).await
}

async fn reporting_every<F: Future>(
    interval: Duration,
    image: &str,
    progress: &Progress,
    pull: F,
) -> F::Output {
    struct Running;
    impl Drop for Running {
        fn drop(&mut self) {
            IN_PROGRESS.fetch_sub(1, Ordering::Relaxed);
        }
    }
    IN_PROGRESS.fetch_add(1, Ordering::Relaxed);
    let _running = Running;
    tokio::pin!(pull);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    loop {
        tokio::select! {
            out = &mut pull => return out,
            _ = ticks.tick() => progress.log(image),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slow_pull_is_counted_while_it_runs() {
        let progress = Progress::new(3, 300);
        let before = totals();
        let tick = Duration::from_millis(5);
        let out = reporting_every(tick, "x", &progress, async {
            // Other tests pull at the same time; this one counts at least itself.
            assert!(totals().in_progress >= 1);
            progress.downloaded(100);
            tokio::time::sleep(tick * 3).await;
            progress.layer_done(0);
            progress.layer_done(200);
            7
        })
        .await;
        assert_eq!(out, 7);
        assert_eq!(progress.bytes.load(Ordering::Relaxed), 300);
        assert_eq!(progress.layers_done.load(Ordering::Relaxed), 2);
        assert!(totals().downloaded_bytes >= before.downloaded_bytes + 100);
    }
}
