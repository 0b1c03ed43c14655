//! The request path of the ingress, one small step each:
//! host → route (404 if none) → count the connection → upstream connection (reused per
//! client connection; 502 if the pod is not listening) → forward → tunnel upgrades.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, HOST, UPGRADE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

use crate::{parse_pod_host, ActivityGuard, Route, RouteTable};

type Body = BoxBody<Bytes, hyper::Error>;

/// Largest request head accepted; bigger gets the connection closed (431 from hyper).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// A client has this long to send a complete request head (slowloris guard).
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct ProxyMetrics {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    pub not_found: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub upgrades: AtomicU64,
}

struct Ingress {
    domain: String,
    routes: Arc<RouteTable>,
    metrics: Arc<ProxyMetrics>,
}

/// What one client connection holds between its requests.
#[derive(Default)]
struct ClientConn {
    /// The container this connection counts against.
    guard: Option<(String, ActivityGuard)>,
    /// An idle upstream connection to reuse: (container id, port, sender).
    upstream: Option<(String, u16, SendRequest<Incoming>)>,
}

/// Serves the ingress on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    domain: String,
    routes: Arc<RouteTable>,
    metrics: Arc<ProxyMetrics>,
) {
    let ingress = Arc::new(Ingress {
        domain,
        routes,
        metrics,
    });
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!("ingress accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        ingress.metrics.connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(serve_connection(ingress.clone(), stream, peer));
    }
}

async fn serve_connection(ingress: Arc<Ingress>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let state = Arc::new(Mutex::new(ClientConn::default()));
    let service = service_fn(move |req| {
        let ingress = ingress.clone();
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(&ingress, &state, peer, req).await) }
    });
    let result = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
    if let Err(e) = result {
        tracing::debug!(%peer, "ingress connection ended: {e}");
    }
}

async fn handle(
    ingress: &Ingress,
    state: &Mutex<ClientConn>,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Response<Body> {
    ingress.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("")
        .to_string();
    let Some(pod) = parse_pod_host(&host, &ingress.domain) else {
        ingress.metrics.not_found.fetch_add(1, Ordering::Relaxed);
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "no pod is served at host {host:?}; pod URLs look like <stub-id>-<port>.{}\n",
                ingress.domain
            ),
        );
    };
    let Some(route) = ingress.routes.lookup(&pod.stub_id, pod.port) else {
        ingress.metrics.not_found.fetch_add(1, Ordering::Relaxed);
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "no running pod serves port {} of stub {}\n",
                pod.port, pod.stub_id
            ),
        );
    };
    let reusable = bind(state, &route);

    add_forwarded(&mut req, peer, &host);
    let upgrading = req.headers().contains_key(UPGRADE);
    let client_upgrade = upgrading.then(|| hyper::upgrade::on(&mut req));

    let mut sender = match reusable.filter(|_| !upgrading) {
        Some(sender) => sender,
        None => match connect(&route, pod.port).await {
            Ok(sender) => sender,
            Err(message) => {
                ingress
                    .metrics
                    .upstream_errors
                    .fetch_add(1, Ordering::Relaxed);
                return text(StatusCode::BAD_GATEWAY, message);
            }
        },
    };
    let mut resp = match sender.send_request(req).await {
        Ok(resp) => resp,
        Err(e) => {
            ingress
                .metrics
                .upstream_errors
                .fetch_add(1, Ordering::Relaxed);
            return text(
                StatusCode::BAD_GATEWAY,
                format!(
                    "pod {} closed the connection on port {}: {e}\n",
                    route.container_id, pod.port
                ),
            );
        }
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            ingress.metrics.upgrades.fetch_add(1, Ordering::Relaxed);
            tunnel(
                client_upgrade,
                hyper::upgrade::on(&mut resp),
                route.activity.connect(),
            );
        }
    } else if !upgrading {
        let mut conn = state.lock().unwrap_or_else(|p| p.into_inner());
        conn.upstream = Some((route.container_id.clone(), pod.port, sender));
    }
    resp.map(BodyExt::boxed)
}

/// Counts this client connection against the route's container and hands out the idle
/// upstream connection if it goes to the same place.
fn bind(state: &Mutex<ClientConn>, route: &Route) -> Option<SendRequest<Incoming>> {
    let mut conn = state.lock().unwrap_or_else(|p| p.into_inner());
    if conn.guard.as_ref().map(|(id, _)| id) != Some(&route.container_id) {
        conn.guard = Some((route.container_id.clone(), route.activity.connect()));
    }
    match conn.upstream.take() {
        Some((id, _, sender)) if id == route.container_id && sender.is_ready() => Some(sender),
        _ => None,
    }
}

/// Opens an HTTP/1.1 connection to the pod: IPv4 first, then IPv6, so apps listening on only
/// one family are reached.
async fn connect(route: &Route, port: u16) -> Result<SendRequest<Incoming>, String> {
    let mut last_error = String::from("the pod has no address");
    for addr in route.socket_addrs(port) {
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                last_error = e.to_string();
                continue;
            }
            Err(_) => {
                last_error = "connection timed out".into();
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake with pod {}: {e}\n", route.container_id))?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        return Ok(sender);
    }
    Err(format!(
        "pod {} is not accepting connections on port {port} yet ({last_error}); retry in a moment\n",
        route.container_id
    ))
}

/// Copies bytes both ways once both sides switched protocols; the tunnel counts as an open
/// connection for as long as it lives.
fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    guard: ActivityGuard,
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
    });
}

fn add_forwarded(req: &mut Request<Incoming>, peer: SocketAddr, host: &str) {
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
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
