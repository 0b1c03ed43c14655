//! Connect phase: an HTTP/1.1 connection to the pod, and the one idle connection a client
//! connection keeps for its next request, so keep-alive clients reuse their upstream
//! connection instead of opening one per request.

use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

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
    #[error("pod {container_id} closed the connection on port {port}: {source}")]
    Closed {
        container_id: String,
        port: u16,
        source: hyper::Error,
    },
}

/// Opens an HTTP/1.1 connection to the pod: IPv4 first, then IPv6, so apps listening on only
/// one family are reached.
pub(crate) async fn connect(
    route: &Route,
    port: u16,
) -> Result<SendRequest<Incoming>, UpstreamError> {
    let mut reason = String::from("the pod has no address");
    for addr in route.socket_addrs(port) {
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                reason = e.to_string();
                continue;
            }
            Err(_) => {
                reason = "connection timed out".into();
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
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
        return Ok(sender);
    }
    Err(UpstreamError::NotListening {
        container_id: route.container_id.clone(),
        port,
        reason,
    })
}

/// The upstream connection a client connection left idle after its last response.
#[derive(Default)]
pub(crate) struct Idle(Option<(String, u16, SendRequest<Incoming>)>);

impl Idle {
    /// The idle connection if it goes to `route`'s container on `port` and can take a
    /// request; any other is dropped, which closes it.
    pub(crate) fn take_for(&mut self, route: &Route, port: u16) -> Option<SendRequest<Incoming>> {
        match self.0.take() {
            Some((id, p, sender)) if id == route.container_id && p == port && sender.is_ready() => {
                Some(sender)
            }
            _ => None,
        }
    }

    pub(crate) fn put(&mut self, route: &Route, port: u16, sender: SendRequest<Incoming>) {
        self.0 = Some((route.container_id.clone(), port, sender));
    }
}
