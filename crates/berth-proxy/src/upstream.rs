//! Connect phase: an HTTP/1.1 connection to the pod, and the one idle connection a client
//! connection keeps for its next request, so keep-alive clients reuse their upstream
//! connection instead of opening one per request.

use std::time::Duration;

use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::forward::ReqBody;
use crate::Route;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The pod's side of a 502.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error(
        "pod {container_id} is not accepting connections on port {port} yet ({reason}); retry in a moment"
    )]
    NotListening {
        container_id: String,
        port: u16,
        reason: String,
    },
    #[error("handshake with pod {container_id}: {source}")]
    Handshake {
        container_id: String,
        source: hyper::Error,
    },
    #[error("the request body is larger than this ingress accepts")]
    BodyTooLarge,
    #[error("pod {container_id} closed the connection on port {port}: {source}")]
    Closed {
        container_id: String,
        port: u16,
        source: hyper::Error,
    },
}

/// Opens an HTTP/1.1 connection to the pod.
pub(crate) async fn connect(
    route: &Route,
    port: u16,
) -> Result<SendRequest<ReqBody>, UpstreamError> {
    let stream = route
        .connect(port, CONNECT_TIMEOUT)
        .await
        .map_err(|reason| UpstreamError::NotListening {
            container_id: route.container_id.clone(),
            port,
            reason,
        })?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|source| UpstreamError::Handshake {
            container_id: route.container_id.clone(),
            source,
        })?;
    // The connection drives itself; it ends when the sender is dropped or the pod closes.
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    Ok(sender)
}

/// The upstream connections a client connection left idle after its responses.
#[derive(Default)]
pub(crate) struct Idle(Vec<(String, u16, SendRequest<ReqBody>)>);

/// Upstream connections one client connection keeps for reuse (HTTP/2 clients run several
/// requests at once, each needing its own HTTP/1.1 connection to the pod).
const IDLE_PER_CLIENT: usize = 8;

impl Idle {
    /// A kept connection to `port` of `route`'s container that can take a request now.
    pub(crate) fn take_for(&mut self, route: &Route, port: u16) -> Option<SendRequest<ReqBody>> {
        self.0.retain(|(_, _, s)| !s.is_closed());
        let at = self
            .0
            .iter()
            .position(|(id, p, s)| id == &route.container_id && *p == port && s.is_ready())?;
        Some(self.0.swap_remove(at).2)
    }

    pub(crate) fn put(&mut self, route: &Route, port: u16, sender: SendRequest<ReqBody>) {
        if self.0.len() >= IDLE_PER_CLIENT {
            self.0.remove(0);
        }
        self.0.push((route.container_id.clone(), port, sender));
    }
}
