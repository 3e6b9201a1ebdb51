//! Giving back what a burst freed. glibc keeps freed memory in its heap unless asked
//! to return it (`malloc_trim`); the agent asks every 10 s, and within a second of a
//! pod or container removal, so a node drained of a hundred pods is back to its size
//! soon after, not only at the next 10 s tick.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Something big was freed since the last trim.
static FREED: AtomicBool = AtomicBool::new(false);

/// Notes that a removal freed memory: the next tick gives it back.
pub fn freed() {
    FREED.store(true, Ordering::Relaxed);
}

/// Trims every 10 s, and at the first tick (each second) after [`freed`]. A removal
/// burst so trims about once a second, each call on a few-MB heap cheap next to
/// the burst; an idle agent still trims only every 10 s.
pub async fn give_back() {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    let mut ticks = 0u32;
    loop {
        every.tick().await;
        ticks = ticks.wrapping_add(1);
        if FREED.swap(false, Ordering::Relaxed) || ticks.is_multiple_of(10) {
            #[cfg(target_env = "gnu")]
            // SAFETY: malloc_trim only returns free memory; it is thread-safe.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    }
}
