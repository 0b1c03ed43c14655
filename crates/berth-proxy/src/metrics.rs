//! Counters the server exports on `/metrics`: the ingress's totals, and per pod its
//! requests, bytes sent back and a histogram of the time to the response head.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds (seconds) of the latency histogram's buckets, as Prometheus' defaults.
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default)]
pub struct ProxyMetrics {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    pub not_found: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub upgrades: AtomicU64,
    pods: Mutex<HashMap<String, PodStats>>,
}

/// One pod's traffic through the ingress.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PodStats {
    pub requests: u64,
    pub bytes_out: u64,
    /// Cumulative counts per [`LATENCY_BUCKETS`] bound (the `+Inf` bucket is `requests`).
    pub latency_buckets: [u64; LATENCY_BUCKETS.len()],
    pub latency_sum_seconds: f64,
}

impl ProxyMetrics {
    /// Every pod with traffic since it started (or since the server did), by container id.
    pub fn pods(&self) -> Vec<(String, PodStats)> {
        let pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = pods.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Keeps the series of the pods `live` says are still there, so the export does not
    /// grow with every pod that ever ran.
    pub fn retain_pods(&self, live: impl Fn(&str) -> bool) {
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, _| live(id));
    }

    pub(crate) fn record_head(&self, container_id: &str, latency: Duration) {
        let mut pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        // The id is copied only for a pod's first request, not on every one.
        if !pods.contains_key(container_id) {
            pods.insert(container_id.to_string(), PodStats::default());
        }
        let Some(stats) = pods.get_mut(container_id) else {
            return;
        };
        let seconds = latency.as_secs_f64();
        stats.requests += 1;
        stats.latency_sum_seconds += seconds;
        for (bound, count) in LATENCY_BUCKETS.iter().zip(stats.latency_buckets.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
    }

    pub(crate) fn record_bytes(&self, container_id: &str, bytes: u64) {
        let mut pods = self.pods.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(stats) = pods.get_mut(container_id) {
            stats.bytes_out += bytes;
        }
    }
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_cumulative() {
        let m = ProxyMetrics::default();
        m.record_head("pod-a", Duration::from_millis(3));
        m.record_head("pod-a", Duration::from_millis(300));
        m.record_bytes("pod-a", 10);
        m.record_bytes("pod-gone", 10);
        let pods = m.pods();
        assert_eq!(pods.len(), 1);
        let a = &pods[0].1;
        assert_eq!((a.requests, a.bytes_out), (2, 10));
        assert_eq!(a.latency_buckets[0], 1);
        assert_eq!(a.latency_buckets[6], 2, "0.5 s holds both");
        m.retain_pods(|id| id != "pod-a");
        assert!(m.pods().is_empty());
    }
}
