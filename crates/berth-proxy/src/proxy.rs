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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Activity;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An upstream that answers each request with its request line and X-Forwarded-For, and
    /// on `Upgrade` switches protocols and echoes bytes.
    async fn upstream() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    let mut have = 0;
                    loop {
                        let n = s.read(&mut buf[have..]).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        have += n;
                        let Some(end) = find(&buf[..have], b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        have = 0;
                        let line = head.lines().next().unwrap_or("").to_string();
                        let xff = head
                            .lines()
                            .find_map(|l| l.strip_prefix("x-forwarded-for: "))
                            .unwrap_or("")
                            .to_string();
                        if head.to_ascii_lowercase().contains("upgrade: echo") {
                            let _ = s
                                .write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n")
                                .await;
                            loop {
                                let n = s.read(&mut buf).await.unwrap_or(0);
                                if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                        let body = format!("{line} xff={xff}");
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        port
    }

    fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
        hay.windows(needle.len()).position(|w| w == needle)
    }

    async fn ingress(routes: Arc<RouteTable>) -> (SocketAddr, Arc<ProxyMetrics>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let metrics = Arc::new(ProxyMetrics::default());
        tokio::spawn(serve(listener, "pods.test".into(), routes, metrics.clone()));
        (addr, metrics)
    }

    fn route(id: &str, port: u16) -> (Route, Arc<Activity>) {
        let activity = Arc::new(Activity::default());
        let route = Route {
            container_id: id.into(),
            addrs: vec!["127.0.0.1".parse().expect("ip")],
            ports: vec![port],
            activity: activity.clone(),
        };
        (route, activity)
    }

    /// Sends one request on `conn` and reads one response (status, body).
    async fn request(conn: &mut TcpStream, host: &str, path: &str) -> (u16, String) {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
        conn.write_all(req.as_bytes()).await.expect("write");
        read_response(conn).await
    }

    async fn read_response(conn: &mut TcpStream) -> (u16, String) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = conn.read(&mut chunk).await.expect("read");
            assert!(
                n > 0,
                "connection closed mid-response: {}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
            let Some(end) = find(&buf, b"\r\n\r\n") else {
                continue;
            };
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let status = head[9..12].parse().expect("status");
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                return (status, body);
            }
        }
    }

    #[tokio::test]
    async fn unknown_hosts_get_404() {
        let (addr, metrics) = ingress(Arc::new(RouteTable::new())).await;
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        let (status, body) = request(&mut conn, "abc-80.pods.test", "/").await;
        assert_eq!(status, 404);
        assert!(
            body.contains("no running pod serves port 80 of stub abc"),
            "{body}"
        );
        let (status, _) = request(&mut conn, "example.com", "/").await;
        assert_eq!(status, 404);
        assert_eq!(metrics.not_found.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_pod_not_listening_gets_a_readable_502() {
        let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = closed.local_addr().expect("addr").port();
        drop(closed);
        let routes = Arc::new(RouteTable::new());
        routes.insert("stub", route("pod-stub-1", port).0);
        let (addr, _) = ingress(routes).await;
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        let (status, body) = request(&mut conn, &format!("stub-{port}.pods.test"), "/").await;
        assert_eq!(status, 502);
        assert!(
            body.contains("pod-stub-1 is not accepting connections"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn requests_are_forwarded_and_the_connection_counted_until_closed() {
        let port = upstream().await;
        let routes = Arc::new(RouteTable::new());
        let (r, activity) = route("pod-stub-1", port);
        routes.insert("stub", r);
        let (addr, _) = ingress(routes).await;
        let host = format!("stub-{port}.pods.test:8080");
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        let (status, body) = request(&mut conn, &host, "/a?b=c").await;
        assert_eq!(status, 200);
        assert_eq!(body, "GET /a?b=c HTTP/1.1 xff=127.0.0.1");
        // Keep-alive: a second request on the same client connection.
        let (status, body) = request(&mut conn, &host, "/second").await;
        assert_eq!(status, 200);
        assert!(body.starts_with("GET /second"), "{body}");
        assert_eq!(activity.open_connections(), 1);
        drop(conn);
        for _ in 0..100 {
            if activity.open_connections() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            activity.open_connections(),
            0,
            "closing the client connection is seen"
        );
        assert!(activity.last_active_ms().is_some());
    }

    #[tokio::test]
    async fn upgrades_tunnel_bytes_both_ways_and_count_as_open() {
        let port = upstream().await;
        let routes = Arc::new(RouteTable::new());
        let (r, activity) = route("pod-stub-1", port);
        routes.insert("stub", r);
        let (addr, metrics) = ingress(routes).await;
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: stub-{port}.pods.test\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n"
        );
        conn.write_all(req.as_bytes()).await.expect("write");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while find(&head, b"\r\n\r\n").is_none() {
            assert_eq!(conn.read(&mut byte).await.expect("read"), 1);
            head.push(byte[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        conn.write_all(b"ping through the tunnel")
            .await
            .expect("write");
        let mut echoed = [0u8; 23];
        conn.read_exact(&mut echoed).await.expect("echo");
        assert_eq!(&echoed, b"ping through the tunnel");
        assert!(activity.open_connections() >= 1);
        assert_eq!(metrics.upgrades.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn oversized_request_heads_are_refused() {
        let port = upstream().await;
        let routes = Arc::new(RouteTable::new());
        routes.insert("stub", route("pod-stub-1", port).0);
        let (addr, _) = ingress(routes).await;
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        let huge = "x".repeat(MAX_HEAD_BYTES * 2);
        let req = format!("GET / HTTP/1.1\r\nHost: stub-{port}.pods.test\r\nX-Big: {huge}\r\n\r\n");
        let _ = conn.write_all(req.as_bytes()).await;
        let mut buf = Vec::new();
        let _ = conn.read_to_end(&mut buf).await;
        let text = String::from_utf8_lossy(&buf);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 431"),
            "an oversized head must not be forwarded: {text}"
        );
    }
}
