//! Ingress counters, read by the API's `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ProxyMetrics {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    pub not_found: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub upgrades: AtomicU64,
}

/// Adds one to a counter; the counters are independent, so no ordering is needed.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
