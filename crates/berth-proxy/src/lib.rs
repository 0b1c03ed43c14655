//! The ingress: routes `Host: <stub-id>-<port>.<domain>` to the pod serving it, passes
//! HTTP/1.1 keep-alive and protocol upgrades (websockets) through, and counts each pod's open
//! connections so idle pods can be stopped.
//!
//! It is built from seams so that TLS and wake-on-request plug in without touching the
//! request path:
//! - [`Listener`] is where connections come from; its per-connection `handshake` (nothing for
//!   plain TCP, the TLS handshake for a TLS listener) runs in the connection's own task.
//! - [`RouteMiss`] is asked when a pod host has no route (a pod not running); it may start
//!   one and hand back its route, or leave the request to the usual 404.
//! - Each request goes through small phases, one file each: route → account → connect
//!   (upstream) → forward → upgrade, with failures turned into text responses in one place.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use berth_proxy::{Ingress, ProxyMetrics, RouteTable};
//! # async fn run(listener: tokio::net::TcpListener, routes: Arc<RouteTable>) {
//! let metrics = Arc::new(ProxyMetrics::default());
//! let ingress = Ingress::new("pods.example", routes, metrics);
//! // `.with_route_miss(hook)` to be asked about pod hosts that have no route.
//! tokio::spawn(berth_proxy::serve(listener, Arc::new(ingress)));
//! # }
//! ```

mod access;
mod account;
mod activity;
mod drain;
mod edge;
mod exchange;
mod forward;
mod hop;
mod host;
mod ingress;
mod listener;
mod metrics;
mod response;
mod route;
mod routes;
mod serve;
mod threads;
pub mod tls;
mod upgrade;
mod upstream;

#[cfg(test)]
mod testing;

pub use access::{Authorizer, TOKEN_PARAM};
pub use activity::{Activity, ActivityGuard};
pub use drain::Drain;
pub use host::{parse_pod_host, PodHost};
pub use ingress::{Ingress, DEFAULT_MAX_BODY_BYTES, DEFAULT_POD_CONNECTION_LIMIT};
pub use listener::Listener;
pub use metrics::{PodStats, ProxyMetrics, LATENCY_BUCKETS};
pub use route::{MissOutcome, RouteMiss};
pub use routes::{Route, RouteTable, Tunnel, UpstreamIo};
pub use serve::serve;
pub use threads::{serve_on_threads, IngressThreads};
