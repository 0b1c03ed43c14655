//! Forward phase: tells the pod who asked (`X-Forwarded-*`), then sends the request on the
//! upstream connection.

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::HeaderValue;
use hyper::{Request, Response};

use crate::upstream::UpstreamError;
use crate::Route;

/// Appends the client to `X-Forwarded-For` (keeping what earlier proxies wrote) and sets
/// `X-Forwarded-Host` and `X-Forwarded-Proto` to what the client used.
pub(crate) fn add_forwarded(
    req: &mut Request<Incoming>,
    peer: SocketAddr,
    host: &str,
    scheme: &'static str,
) {
    let headers = req.headers_mut();
    let ip = peer.ip().to_string();
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert("x-forwarded-for", v);
    }
    if let Ok(v) = HeaderValue::from_str(host) {
        headers.insert("x-forwarded-host", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static(scheme));
}

pub(crate) async fn send(
    sender: &mut SendRequest<Incoming>,
    req: Request<Incoming>,
    route: &Route,
    port: u16,
) -> Result<Response<Incoming>, UpstreamError> {
    sender
        .send_request(req)
        .await
        .map_err(|source| UpstreamError::Closed {
            container_id: route.container_id.clone(),
            port,
            source,
        })
}
