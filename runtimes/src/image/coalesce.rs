//! Coalescing of identical concurrent work: the first caller for a key starts the
//! operation, later callers wait for the same result.
//!
//! Two lifetimes: a *detached* operation runs as its own task and finishes even when
//! every waiter has gone (a pull whose gRPC deadline passed keeps going, and the
//! kubelet's retry joins it); an *attached* one lives only while someone awaits it
//! (a download nobody needs any more is dropped, and its temp file with it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::{BoxFuture, FutureExt, Shared, WeakShared};

use super::digest::share_error;
use crate::error::{Error, Result};

type SharedOp<T> = Shared<BoxFuture<'static, Result<T, Arc<Error>>>>;

enum Slot<T: Clone> {
    Detached(SharedOp<T>),
    Attached(WeakShared<BoxFuture<'static, Result<T, Arc<Error>>>>),
}

struct Entry<T: Clone> {
    generation: u64,
    slot: Slot<T>,
}

type Map<T> = Arc<Mutex<HashMap<String, Entry<T>>>>;

/// In-flight operations producing `T`, by key.
pub(crate) struct Coalescer<T: Clone> {
    map: Map<T>,
    next: AtomicU64,
}

impl<T: Clone> Default for Coalescer<T> {
    fn default() -> Self {
        Coalescer {
            map: Arc::default(),
            next: AtomicU64::new(0),
        }
    }
}

fn lock<T: Clone>(
    map: &Mutex<HashMap<String, Entry<T>>>,
) -> MutexGuard<'_, HashMap<String, Entry<T>>> {
    // A panic while holding this lock cannot leave the map inconsistent.
    map.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<T: Clone + Send + Sync + 'static> Coalescer<T> {
    /// Joins the operation running for `key`, or starts `op` for it.
    pub(crate) fn run(
        &self,
        key: &str,
        detached: bool,
        op: impl FnOnce() -> BoxFuture<'static, Result<T>>,
    ) -> BoxFuture<'static, Result<T>> {
        let shared = {
            let mut map = lock(&self.map);
            let running = map.get(key).and_then(|e| match &e.slot {
                Slot::Detached(s) => Some(s.clone()),
                Slot::Attached(w) => w.upgrade(),
            });
            match running {
                Some(shared) => shared,
                None => {
                    let generation = self.next.fetch_add(1, Ordering::Relaxed);
                    let work =
                        finish_then_forget(self.map.clone(), key.to_string(), generation, op());
                    let shared = if detached {
                        let task = tokio::spawn(work);
                        async move {
                            task.await.unwrap_or_else(|e| {
                                Err(Arc::new(Error::internal(
                                    "image store",
                                    "a detached pull task",
                                    e,
                                )))
                            })
                        }
                        .boxed()
                        .shared()
                    } else {
                        work.boxed().shared()
                    };
                    let slot = match shared.downgrade() {
                        Some(weak) if !detached => Slot::Attached(weak),
                        _ => Slot::Detached(shared.clone()),
                    };
                    map.insert(key.to_string(), Entry { generation, slot });
                    shared
                }
            }
        };
        async move { shared.await.map_err(|e| share_error(&e)) }.boxed()
    }

    /// Number of operations in flight (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        lock(&self.map).len()
    }
}

/// Runs `op`, then removes its own entry so later callers start afresh.
async fn finish_then_forget<T: Clone>(
    map: Map<T>,
    key: String,
    generation: u64,
    op: BoxFuture<'static, Result<T>>,
) -> Result<T, Arc<Error>> {
    let result = op.await.map_err(Arc::new);
    let mut map = lock(&map);
    if map.get(&key).is_some_and(|e| e.generation == generation) {
        map.remove(&key);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn concurrent_callers_share_one_run() {
        let c: Coalescer<u32> = Coalescer::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let start = |runs: Arc<AtomicUsize>| {
            move || {
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok(7)
                }
                .boxed()
            }
        };
        for detached in [false, true] {
            runs.store(0, Ordering::SeqCst);
            let a = c.run("k", detached, start(runs.clone()));
            let b = c.run("k", detached, start(runs.clone()));
            let (a, b) = tokio::join!(a, b);
            assert_eq!((a.unwrap(), b.unwrap()), (7, 7));
            assert_eq!(runs.load(Ordering::SeqCst), 1);
            assert_eq!(c.len(), 0);
        }
    }

    #[tokio::test]
    async fn errors_reach_every_waiter_and_are_not_cached() {
        let c: Coalescer<u32> = Coalescer::default();
        let fail = || async { Err(Error::InvalidSpec("bad".into())) }.boxed();
        let (a, b) = tokio::join!(c.run("k", false, fail), c.run("k", false, fail));
        assert!(matches!(a, Err(Error::InvalidSpec(_))) && matches!(b, Err(Error::InvalidSpec(_))));
        assert_eq!(
            c.run("k", false, || async { Ok(1) }.boxed()).await.unwrap(),
            1
        );
    }

    #[tokio::test]
    async fn attached_work_stops_when_dropped_and_detached_work_goes_on() {
        let c: Coalescer<u32> = Coalescer::default();
        let done = Arc::new(AtomicUsize::new(0));
        for detached in [false, true] {
            let d = done.clone();
            let fut = c.run("k", detached, move || {
                async move {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    d.fetch_add(1, Ordering::SeqCst);
                    Ok(1)
                }
                .boxed()
            });
            // Poll once so the work starts, then walk away.
            let _ = tokio::time::timeout(Duration::from_millis(5), fut).await;
            tokio::time::sleep(Duration::from_millis(120)).await;
        }
        assert_eq!(
            done.load(Ordering::SeqCst),
            1,
            "only the detached run finished"
        );
    }
}
