//! Per-container connection accounting: how many client connections are open, and when the
//! last one closed (the moment a keep-warm deadline counts from).

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Default)]
pub struct Activity {
    open: AtomicUsize,
    /// Unix milliseconds of the last connection opening or closing; 0 if none yet.
    last_active_ms: AtomicI64,
}

impl Activity {
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    pub fn last_active_ms(&self) -> Option<i64> {
        match self.last_active_ms.load(Ordering::SeqCst) {
            0 => None,
            ms => Some(ms),
        }
    }

    /// Counts a connection as open until the returned guard drops.
    pub fn connect(self: &Arc<Self>) -> ActivityGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        self.touch();
        ActivityGuard(self.clone())
    }

    /// Counts now as activity: a pod adopted after a server restart gets a full keep-warm
    /// period, since the connections it had before are unknown.
    pub fn touch(&self) {
        self.last_active_ms.store(now_ms(), Ordering::SeqCst);
    }
}

/// One open client connection to a container.
#[derive(Debug)]
pub struct ActivityGuard(Arc<Activity>);

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        // Refresh first, so a reader that sees zero open connections also sees the new time.
        self.0.touch();
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_and_refresh() {
        let a = Arc::new(Activity::default());
        assert_eq!(a.last_active_ms(), None);
        let g1 = a.connect();
        let g2 = a.connect();
        assert_eq!(a.open_connections(), 2);
        drop(g1);
        assert_eq!(a.open_connections(), 1);
        drop(g2);
        assert_eq!(a.open_connections(), 0);
        assert!(a.last_active_ms().is_some());
    }
}
