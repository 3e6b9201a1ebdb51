//! One operation at a time per pod key: the CNI spec forbids parallel operations on one
//! attachment, and the cache record must not be rewritten under a running DEL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

type Slot = Arc<AsyncMutex<()>>;

/// A lock per key; entries disappear when nobody holds or waits for them.
#[derive(Default)]
pub(crate) struct KeyLocks {
    map: Mutex<HashMap<String, Slot>>,
}

/// Holds a key until dropped (also when the future holding it is cancelled).
pub(crate) struct KeyGuard<'a> {
    locks: &'a KeyLocks,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyLocks {
    /// Waits for `key` to be free and takes it.
    pub(crate) async fn lock(&self, key: &str) -> KeyGuard<'_> {
        let slot = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.to_string()).or_default().clone()
        };
        KeyGuard {
            locks: self,
            key: key.to_string(),
            guard: Some(slot.lock_owned().await),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.map.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map's own reference left: nobody holds or waits for this key.
        if map
            .get(&self.key)
            .is_some_and(|s| Arc::strong_count(s) == 1)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn same_key_waits_other_keys_do_not_and_entries_go_away() {
        let locks = Arc::new(KeyLocks::default());
        let a = locks.lock("a").await;
        let _b = locks.lock("b").await;
        let l2 = locks.clone();
        let waiter = tokio::spawn(async move {
            let _a = l2.lock("a").await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiter.is_finished(),
            "a second holder of \"a\" had to wait"
        );
        drop(a);
        waiter.await.unwrap();
        drop(_b);
        assert_eq!(locks.len(), 0);
    }
}
