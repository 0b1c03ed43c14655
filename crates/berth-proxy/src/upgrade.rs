//! Upgrade phase: a request asking to switch protocols (websockets) that the pod accepts
//! becomes a byte tunnel between client and pod, outside HTTP.

use hyper::body::Incoming;
use hyper::header::UPGRADE;
use hyper::upgrade::OnUpgrade;
use hyper::Request;
use hyper_util::rt::TokioIo;

use crate::drain::OpenGuard;
use crate::ActivityGuard;

/// The client's side of an upgrade, if the request asks for one. Taken before the request
/// is forwarded, as forwarding consumes it.
pub(crate) fn requested(req: &mut Request<Incoming>) -> Option<OnUpgrade> {
    req.headers()
        .contains_key(UPGRADE)
        .then(|| hyper::upgrade::on(req))
}

/// Copies bytes both ways once both sides switched protocols; the tunnel counts as an open
/// connection for as long as it lives.
pub(crate) fn tunnel(
    client: OnUpgrade,
    upstream: OnUpgrade,
    guard: ActivityGuard,
    open: OpenGuard,
) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!("upgrade failed: {e}");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        drop(guard);
        drop(open);
    });
}
