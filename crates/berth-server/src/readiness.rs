//! Whether a pod's port takes connections yet. A process that has just started needs a few
//! milliseconds to listen; a request that waited for its pod to start is sent on once the
//! port accepts, so it gets the app's answer rather than a 502 to retry.

use std::time::Duration;

use berth_proxy::Route;

/// How long one probe may take to connect.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Between probes: a refused connect on the pod's veth is answered at once, so this is the
/// probe's cost, and what it adds to the first answer at worst.
const PROBE_INTERVAL: Duration = Duration::from_millis(2);

/// Whether the pod accepts a TCP connection on `port` (on any of its addresses, through
/// its worker for a pod on one).
pub async fn accepts(route: &Route, port: u16) -> bool {
    route.connect(port, PROBE_TIMEOUT).await.is_ok()
}

/// Probes until `port` accepts or `limit` passes; whether it accepts.
pub async fn until_accepting(route: &Route, port: u16, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if accepts(route, port).await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}
