//! The ingress: routes `Host: <stub-id>-<port>.<domain>` to the pod serving it, passes
//! HTTP/1.1 keep-alive and protocol upgrades (websockets) through, and counts each pod's open
//! connections so idle pods can be stopped.

mod activity;
mod host;
mod proxy;
mod routes;

pub use activity::{Activity, ActivityGuard};
pub use host::{parse_pod_host, PodHost};
pub use proxy::{serve, ProxyMetrics};
pub use routes::{Route, RouteTable};
