//! `GET /metrics` in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::response::body_response;
use super::state::AppState;
use crate::node::Node;

pub async fn metrics<N: Node>(State(state): State<Arc<AppState<N>>>) -> Response {
    let mut out = String::new();
    let _ = writeln!(out, "# HELP berth_containers Containers by status.");
    let _ = writeln!(out, "# TYPE berth_containers gauge");
    match state.lifecycle.status_counts().await {
        Ok(counts) => {
            for (status, n) in counts {
                let _ = writeln!(
                    out,
                    "berth_containers{{status=\"{}\"}} {n}",
                    status.as_str()
                );
            }
        }
        // Scrapers read a missing series as unknown, not as zero containers.
        Err(e) => tracing::warn!("metrics: counting containers: {e}"),
    }
    let m = &state.metrics;
    let counters = [
        (
            "berth_ingress_connections_total",
            "Client connections accepted by the ingress.",
            m.connections.load(Ordering::Relaxed),
        ),
        (
            "berth_ingress_requests_total",
            "Requests received by the ingress.",
            m.requests.load(Ordering::Relaxed),
        ),
        (
            "berth_ingress_not_found_total",
            "Ingress requests for hosts with no running pod.",
            m.not_found.load(Ordering::Relaxed),
        ),
        (
            "berth_ingress_upstream_errors_total",
            "Ingress requests the pod did not answer.",
            m.upstream_errors.load(Ordering::Relaxed),
        ),
        (
            "berth_ingress_upgrades_total",
            "Connections upgraded (websockets) through the ingress.",
            m.upgrades.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP berth_ingress_open_connections Open client connections to pods.\n# TYPE berth_ingress_open_connections gauge\nberth_ingress_open_connections {}",
        state.lifecycle.open_connections()
    );
    // Series of ended pods are dropped here, at the scrape, once they are no longer listed.
    if let Ok(live) = state.lifecycle.list(false).await {
        let live: std::collections::HashSet<String> = live.into_iter().map(|c| c.id).collect();
        state.metrics.retain_pods(|id| live.contains(id));
    }
    pod_series(&mut out, &state.metrics);
    state.lifecycle.start_metrics().render(&mut out);
    body_response(StatusCode::OK, "text/plain; version=0.0.4", Body::from(out))
}

/// Per pod: requests, bytes sent back, and the time to the response head as a histogram.
fn pod_series(out: &mut String, metrics: &berth_proxy::ProxyMetrics) {
    let pods = metrics.pods();
    if pods.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP berth_pod_requests_total Requests the ingress passed to each pod.\n# TYPE berth_pod_requests_total counter");
    for (id, s) in &pods {
        let _ = writeln!(
            out,
            "berth_pod_requests_total{{container=\"{id}\"}} {}",
            s.requests
        );
    }
    let _ = writeln!(out, "# HELP berth_pod_response_bytes_total Response body bytes each pod sent through the ingress.\n# TYPE berth_pod_response_bytes_total counter");
    for (id, s) in &pods {
        let _ = writeln!(
            out,
            "berth_pod_response_bytes_total{{container=\"{id}\"}} {}",
            s.bytes_out
        );
    }
    let _ = writeln!(out, "# HELP berth_pod_response_seconds Time from a request to the pod's response head.\n# TYPE berth_pod_response_seconds histogram");
    for (id, s) in &pods {
        for (bound, count) in berth_proxy::LATENCY_BUCKETS.iter().zip(s.latency_buckets) {
            let _ = writeln!(
                out,
                "berth_pod_response_seconds_bucket{{container=\"{id}\",le=\"{bound}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "berth_pod_response_seconds_bucket{{container=\"{id}\",le=\"+Inf\"}} {}",
            s.requests
        );
        let _ = writeln!(
            out,
            "berth_pod_response_seconds_sum{{container=\"{id}\"}} {}",
            s.latency_sum_seconds
        );
        let _ = writeln!(
            out,
            "berth_pod_response_seconds_count{{container=\"{id}\"}} {}",
            s.requests
        );
    }
}
