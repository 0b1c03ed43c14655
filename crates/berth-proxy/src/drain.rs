//! Draining: the ingress stops accepting, tells its HTTP connections to close once their
//! current request is answered, and reports when the last connection (upgraded tunnels
//! included) has closed. A stopping or upgrading server uses it to hand over without
//! dropping what it holds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

#[derive(Debug)]
pub struct Drain {
    draining: watch::Sender<bool>,
    open: AtomicUsize,
    closed: Notify,
}

impl Default for Drain {
    fn default() -> Self {
        Self {
            draining: watch::channel(false).0,
            open: AtomicUsize::new(0),
            closed: Notify::new(),
        }
    }
}

impl Drain {
    /// Stops every accept loop of the ingress and asks its connections to close.
    pub fn start(&self) {
        self.draining.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Client connections and upgraded tunnels still open.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Waits until nothing is open, or `limit` passes; returns whether everything closed.
    pub async fn wait_closed(&self, limit: Duration) -> bool {
        let closed = async {
            loop {
                let notified = self.closed.notified();
                if self.open() == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, closed).await.is_ok()
    }

    /// Resolves once draining has started.
    pub(crate) async fn started(&self) {
        let mut rx = self.draining.subscribe();
        let _ = rx.wait_for(|draining| *draining).await;
    }

    /// Counts one connection or tunnel until the returned guard drops.
    pub(crate) fn hold(self: &Arc<Self>) -> OpenGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        OpenGuard(self.clone())
    }
}

/// One open connection or tunnel, counted by its [`Drain`].
#[derive(Debug)]
pub(crate) struct OpenGuard(Arc<Drain>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.closed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_the_last_guard() {
        let drain = Arc::new(Drain::default());
        assert!(drain.wait_closed(Duration::from_millis(10)).await);
        let a = drain.hold();
        let b = drain.hold();
        assert_eq!(drain.open(), 2);
        assert!(!drain.wait_closed(Duration::from_millis(20)).await);
        drop(a);
        let waiter = tokio::spawn({
            let drain = drain.clone();
            async move { drain.wait_closed(Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(b);
        assert!(waiter.await.expect("joins"));
        assert_eq!(drain.open(), 0);
    }

    #[tokio::test]
    async fn started_resolves_after_start() {
        let drain = Arc::new(Drain::default());
        let started = tokio::spawn({
            let drain = drain.clone();
            async move { drain.started().await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!started.is_finished());
        drain.start();
        tokio::time::timeout(Duration::from_secs(5), started)
            .await
            .expect("resolves")
            .expect("joins");
        assert!(drain.is_draining());
    }
}
