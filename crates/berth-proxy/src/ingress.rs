//! The ingress and its request path, one phase per step:
//! route (404, after asking the route-miss hook) → account the client connection → connect
//! upstream (reusing the client connection's idle one; 502 if the pod is not listening) →
//! forward → tunnel upgrades.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use crate::account::Account;
use crate::metrics::bump;
use crate::response::{Body, ProxyError};
use crate::upstream::{self, Idle};
use crate::{forward, route, upgrade, ProxyMetrics, RouteMiss, RouteTable};

/// What the ingress serves: pods under `domain` as listed in the route table.
pub struct Ingress {
    /// Lower case, as [`parse_pod_host`](crate::parse_pod_host) expects.
    pub(crate) domain: String,
    pub(crate) routes: Arc<RouteTable>,
    pub(crate) metrics: Arc<ProxyMetrics>,
    pub(crate) route_miss: Option<Arc<dyn RouteMiss>>,
}

impl Ingress {
    /// An ingress for pods under `domain` (in lower case) that answers 404 for hosts
    /// without a route.
    pub fn new(
        domain: impl Into<String>,
        routes: Arc<RouteTable>,
        metrics: Arc<ProxyMetrics>,
    ) -> Self {
        Self {
            domain: domain.into(),
            routes,
            metrics,
            route_miss: None,
        }
    }

    /// Asks `hook` for a route when a pod host has none, instead of answering 404 at once.
    pub fn with_route_miss(mut self, hook: Arc<dyn RouteMiss>) -> Self {
        self.route_miss = Some(hook);
        self
    }
}

/// One client connection: who it is, and what it holds between its requests.
pub(crate) struct ClientConn {
    pub peer: SocketAddr,
    /// What the client spoke to the listener, for `X-Forwarded-Proto`.
    pub scheme: &'static str,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    account: Account,
    idle: Idle,
}

impl ClientConn {
    pub(crate) fn new(peer: SocketAddr, scheme: &'static str) -> Self {
        Self {
            peer,
            scheme,
            held: Mutex::default(),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        // The state stays consistent even if a holder panicked: take it back.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Answers one request: the pod's response, or the ingress's own text if it cannot.
pub(crate) async fn handle(
    ingress: &Ingress,
    client: &ClientConn,
    req: Request<Incoming>,
) -> Response<Body> {
    bump(&ingress.metrics.requests);
    match proxy(ingress, client, req).await {
        Ok(resp) => resp,
        Err(e) => {
            bump(match e {
                ProxyError::Client(_) => &ingress.metrics.not_found,
                ProxyError::Upstream(_) => &ingress.metrics.upstream_errors,
            });
            e.into_response()
        }
    }
}

async fn proxy(
    ingress: &Ingress,
    client: &ClientConn,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, ProxyError> {
    let route::Target { host, pod, route } = route::route(ingress, &req).await?;
    let reusable = {
        let mut held = client.held();
        held.account.count(&route);
        held.idle.take_for(&route, pod.port)
    };

    forward::add_forwarded(&mut req, client.peer, &host, client.scheme);
    let client_upgrade = upgrade::requested(&mut req);
    let upgrading = client_upgrade.is_some();

    // An upgrade takes its upstream connection for good, so it gets a fresh one.
    let mut sender = match reusable.filter(|_| !upgrading) {
        Some(sender) => sender,
        None => upstream::connect(&route, pod.port).await?,
    };
    let mut resp = forward::send(&mut sender, req, &route, pod.port).await?;

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            bump(&ingress.metrics.upgrades);
            upgrade::tunnel(
                client_upgrade,
                hyper::upgrade::on(&mut resp),
                route.activity.connect(),
            );
        }
    } else if !upgrading {
        client.held().idle.put(&route, pod.port, sender);
    }
    Ok(resp.map(BodyExt::boxed))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use crate::testing::{find, request, route, start as ingress, upstream, upstream_answering};
    use crate::RouteTable;

    use super::*;

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
    async fn an_upstream_connection_is_reused_only_for_the_same_port() {
        let first = upstream().await;
        let second = upstream_answering(|_| "second".into()).await;
        let routes = Arc::new(RouteTable::new());
        let (mut r, _) = route("pod-stub-1", first);
        r.ports.push(second);
        routes.insert("stub", r);
        let (addr, _) = ingress(routes).await;
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        let (_, body) = request(&mut conn, &format!("stub-{first}.pods.test"), "/").await;
        assert!(body.starts_with("GET /"), "{body}");
        let (_, body) = request(&mut conn, &format!("stub-{second}.pods.test"), "/").await;
        assert_eq!(body, "second");
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
}
