//! The ingress and its request path, one phase per step:
//! edge answers (ACME challenges, the HTTPS redirect, 421) → route (404, after asking the
//! route-miss hook) → access (401 for pods that want a token) → account the client → connect
//! upstream (reusing the client connection's idle one; 502 if the pod is not listening) →
//! forward → tunnel upgrades.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use hyper::{Request, Response, StatusCode, Version};

use crate::access::{self, Access, Authorizer, Door};
use crate::account::Account;
use crate::drain::Drain;
use crate::exchange::Exchange;
use crate::forward::Origin;
use crate::metrics::bump;
use crate::response::{Body, ProxyError};
use crate::tls::AcmeChallenges;
use crate::upstream::{self, Idle, UpstreamError};
use crate::{edge, forward, hop, route, upgrade, ProxyMetrics, RouteMiss, RouteTable};

/// Request bodies larger than this get 413 unless the ingress is told otherwise.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024 * 1024;
/// Open client connections (or HTTP/2 streams) one pod may hold before new ones get 503.
pub const DEFAULT_POD_CONNECTION_LIMIT: usize = 1024;

/// What the ingress serves: pods under `domain` as listed in the route table.
pub struct Ingress {
    /// Lower case, as [`parse_pod_host`](crate::parse_pod_host) expects.
    pub(crate) domain: String,
    pub(crate) routes: Arc<RouteTable>,
    pub(crate) metrics: Arc<ProxyMetrics>,
    pub(crate) route_miss: Option<route::RouteMissHook>,
    pub(crate) authorizer: Option<Arc<dyn Authorizer>>,
    pub(crate) acme_challenges: Option<Arc<AcmeChallenges>>,
    /// When set, plain-HTTP requests are redirected to HTTPS on this port.
    pub(crate) https_port: Option<u16>,
    pub(crate) max_body_bytes: u64,
    pub(crate) pod_connection_limit: usize,
    pub(crate) drain: Arc<Drain>,
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
            authorizer: None,
            acme_challenges: None,
            https_port: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            pod_connection_limit: DEFAULT_POD_CONNECTION_LIMIT,
            drain: Arc::default(),
        }
    }

    /// Stops the accept loops and lets open connections finish (see [`Drain`]).
    pub fn drain(&self) -> &Arc<Drain> {
        &self.drain
    }

    /// Asks `hook` for a route when a pod host has none, instead of answering 404 at once.
    /// The hook runs on the Tokio runtime this is called from, if any.
    pub fn with_route_miss(mut self, hook: Arc<dyn RouteMiss>) -> Self {
        self.route_miss = Some(route::RouteMissHook {
            hook,
            runtime: tokio::runtime::Handle::try_current().ok(),
        });
        self
    }

    /// Checks tokens for pods whose route is `authorized` (without one, such pods refuse all).
    pub fn with_authorizer(mut self, authorizer: Arc<dyn Authorizer>) -> Self {
        self.authorizer = Some(authorizer);
        self
    }

    /// Answers ACME HTTP-01 challenges from `challenges`, on every listener.
    pub fn with_acme_challenges(mut self, challenges: Arc<AcmeChallenges>) -> Self {
        self.acme_challenges = Some(challenges);
        self
    }

    /// Redirects plain-HTTP requests (ACME challenges aside) to HTTPS on `port` (308).
    pub fn with_https_redirect(mut self, port: u16) -> Self {
        self.https_port = Some(port);
        self
    }

    /// Request bodies past `bytes` are refused with 413 (at once when the length is known).
    pub fn with_max_body_bytes(mut self, bytes: u64) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// The open connections (HTTP/2: streams) one pod may hold; past it, 503 + Retry-After.
    pub fn with_pod_connection_limit(mut self, limit: usize) -> Self {
        self.pod_connection_limit = limit.max(1);
        self
    }
}

/// One client connection: who it is, and what it holds between its requests.
pub(crate) struct ClientConn {
    pub peer: SocketAddr,
    /// What the client spoke to the listener, for `X-Forwarded-Proto`.
    pub scheme: &'static str,
    /// The TLS server name the connection was opened for.
    pub server_name: Option<String>,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    account: Account,
    idle: Idle,
}

impl ClientConn {
    pub(crate) fn new(peer: SocketAddr, scheme: &'static str, server_name: Option<String>) -> Self {
        Self {
            peer,
            scheme,
            server_name,
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
    let mut exchange = Exchange::new(
        route::request_host(&req),
        req.method().clone(),
        ingress.metrics.clone(),
    );
    let resp = match proxy(ingress, client, req, &mut exchange).await {
        Ok(resp) => resp,
        Err(e) => {
            bump(match e {
                ProxyError::Client(_) => &ingress.metrics.not_found,
                _ => &ingress.metrics.upstream_errors,
            });
            e.into_response()
        }
    };
    exchange.finish(resp)
}

async fn proxy(
    ingress: &Ingress,
    client: &ClientConn,
    mut req: Request<Incoming>,
    exchange: &mut Exchange,
) -> Result<Response<Body>, ProxyError> {
    if let Some(resp) = edge::answer(ingress, client, &req) {
        return Ok(resp);
    }
    let route::Target {
        host,
        pod,
        route,
        prefix,
    } = route::route(ingress, &req).await?;
    exchange.container_id = Some(route.container_id.clone());
    if route.authorized {
        let door = Door {
            container_id: &route.container_id,
            port: pod.port,
            scheme: client.scheme,
            cookie_path: prefix.as_deref().unwrap_or("/"),
        };
        if let Access::Respond(resp) = access::check(ingress.authorizer.as_deref(), &door, &mut req)
        {
            return Ok(resp);
        }
    }
    if let Some(prefix) = &prefix {
        route::strip_prefix(&mut req, prefix);
    }
    let too_large = ProxyError::TooLarge {
        limit_mib: ingress.max_body_bytes / (1024 * 1024),
    };
    if content_length(&req).is_some_and(|len| len > ingress.max_body_bytes) {
        return Err(too_large);
    }

    // HTTP/1.1 counts the client connection against the pod while it is open; HTTP/2
    // multiplexes many pods and idle time over one connection, so it counts each request
    // until its response ends.
    let per_request = req.version() == Version::HTTP_2;
    let limit = ingress.pod_connection_limit;
    let busy = || ProxyError::Busy {
        container_id: route.container_id.clone(),
        limit,
    };
    let reusable = if per_request {
        if route.activity.open_connections() >= limit {
            return Err(busy());
        }
        exchange.hold = Some(route.activity.connect());
        client.held().idle.take_for(&route, pod.port)
    } else {
        let mut held = client.held();
        if !held.account.counts(&route) && route.activity.open_connections() >= limit {
            return Err(busy());
        }
        held.account.count(&route);
        held.idle.take_for(&route, pod.port)
    };

    let client_upgrade = upgrade::requested(&mut req);
    let upgrading = client_upgrade.is_some();
    let origin = Origin {
        peer: client.peer,
        host: &host,
        scheme: client.scheme,
        prefix: prefix.as_deref(),
    };
    forward::prepare(&mut req, &origin, upgrading);
    let max_body = usize::try_from(ingress.max_body_bytes).unwrap_or(usize::MAX);
    let req = req.map(|body| Limited::new(body, max_body));

    // An upgrade takes its upstream connection for good, so it gets a fresh one.
    let mut sender = match reusable.filter(|_| !upgrading) {
        Some(sender) => sender,
        None => upstream::connect(&route, pod.port).await?,
    };
    let mut resp = match forward::send(&mut sender, req, &route, pod.port).await {
        Ok(resp) => resp,
        Err(UpstreamError::BodyTooLarge) => return Err(too_large),
        Err(e) => return Err(e.into()),
    };
    exchange.answered();

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            bump(&ingress.metrics.upgrades);
            upgrade::tunnel(
                client_upgrade,
                hyper::upgrade::on(&mut resp),
                route.activity.connect(),
                ingress.drain.hold(),
            );
        }
    } else {
        hop::strip(resp.headers_mut(), false);
        if !upgrading {
            client.held().idle.put(&route, pod.port, sender);
        }
    }
    Ok(resp.map(BodyExt::boxed))
}

fn content_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
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

    async fn ingress_with(ingress: Ingress) -> std::net::SocketAddr {
        crate::testing::serve_on_loopback(ingress).await
    }

    #[tokio::test]
    async fn plain_http_is_redirected_to_https_except_acme_challenges() {
        let challenges = Arc::new(AcmeChallenges::default());
        challenges.set_for_test("tok", "tok.key");
        let ingress = Ingress::new("pods.test", Arc::new(RouteTable::new()), Arc::default())
            .with_https_redirect(8443)
            .with_acme_challenges(challenges);
        let addr = ingress_with(ingress).await;
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        let head = crate::testing::raw_request(&mut conn, "a-80.pods.test:8080", "/p?q=1").await;
        assert!(head.starts_with("HTTP/1.1 308"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("location: https://a-80.pods.test:8443/p?q=1"),
            "{head}"
        );
        let (status, body) = request(
            &mut conn,
            "a-80.pods.test",
            "/.well-known/acme-challenge/tok",
        )
        .await;
        assert_eq!((status, body.as_str()), (200, "tok.key"));
    }

    #[tokio::test]
    async fn path_style_urls_reach_the_pod_without_their_prefix() {
        let port = upstream_answering(|head| {
            let line = head.lines().next().unwrap_or("");
            let prefix = crate::testing::header(head, "x-forwarded-prefix");
            format!("{line} prefix={prefix}")
        })
        .await;
        let routes = Arc::new(RouteTable::new());
        routes.insert("stub", route("pod-stub-1", port).0);
        let (addr, _) = ingress(routes).await;
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        let (status, body) =
            request(&mut conn, "pods.test", &format!("/pod/stub/{port}/a/b?c")).await;
        assert_eq!(status, 200);
        assert_eq!(body, format!("GET /a/b?c HTTP/1.1 prefix=/pod/stub/{port}"));
        let (_, body) = request(&mut conn, "pods.test", &format!("/pod/stub/{port}")).await;
        assert!(body.starts_with("GET / HTTP/1.1"), "{body}");
        let (status, _) = request(&mut conn, "pods.test", "/elsewhere").await;
        assert_eq!(status, 404);
        let (status, _) = request(&mut conn, "bad host!", "/").await;
        assert_eq!(status, 400);
    }

    #[tokio::test]
    async fn a_declared_body_over_the_cap_gets_413_before_the_pod_sees_it() {
        let port = upstream().await;
        let routes = Arc::new(RouteTable::new());
        routes.insert("stub", route("pod-stub-1", port).0);
        let ingress = Ingress::new("pods.test", routes, Arc::default()).with_max_body_bytes(1024);
        let addr = ingress_with(ingress).await;
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        let req = format!(
            "POST / HTTP/1.1\r\nHost: stub-{port}.pods.test\r\nContent-Length: 4096\r\n\r\n"
        );
        conn.write_all(req.as_bytes()).await.expect("write");
        let (status, body) = crate::testing::read_response(&mut conn).await;
        assert_eq!(status, 413, "{body}");
    }

    #[tokio::test]
    async fn a_pod_at_its_connection_limit_gets_503_with_retry_after() {
        let port = upstream().await;
        let routes = Arc::new(RouteTable::new());
        routes.insert("stub", route("pod-stub-1", port).0);
        let ingress =
            Ingress::new("pods.test", routes, Arc::default()).with_pod_connection_limit(1);
        let addr = ingress_with(ingress).await;
        let host = format!("stub-{port}.pods.test");
        let mut first = TcpStream::connect(addr).await.expect("connect");
        assert_eq!(request(&mut first, &host, "/").await.0, 200);
        let mut second = TcpStream::connect(addr).await.expect("connect");
        let head = crate::testing::raw_request(&mut second, &host, "/").await;
        assert!(head.starts_with("HTTP/1.1 503"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains("retry-after: 1"),
            "{head}"
        );
        // The first connection keeps working.
        assert_eq!(request(&mut first, &host, "/").await.0, 200);
    }

    async fn until_zero(activity: &crate::Activity) -> usize {
        for _ in 0..200 {
            if activity.open_connections() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        activity.open_connections()
    }

    #[tokio::test]
    async fn a_refused_upgrade_and_a_resetting_pod_leave_no_count_behind() {
        // A pod that answers an ordinary 200 to a websocket upgrade.
        let port = upstream().await;
        let routes = Arc::new(RouteTable::new());
        let (r, activity) = route("pod-stub-1", port);
        routes.insert("stub", r);
        // A pod that accepts and drops every connection at once.
        let rude = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let rude_port = rude.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((s, _)) = rude.accept().await {
                drop(s);
            }
        });
        let (r2, rude_activity) = route("pod-rude-1", rude_port);
        routes.insert("rude", r2);
        let (addr, _) = ingress(routes).await;

        let mut conn = TcpStream::connect(addr).await.expect("connect");
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: stub-{port}.pods.test\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
        );
        conn.write_all(req.as_bytes()).await.expect("write");
        let (status, _) = crate::testing::read_response(&mut conn).await;
        assert_eq!(status, 200, "the pod's own answer to a refused upgrade");
        drop(conn);
        assert_eq!(until_zero(&activity).await, 0);

        let mut conn = TcpStream::connect(addr).await.expect("connect");
        let (status, body) = request(&mut conn, &format!("rude-{rude_port}.pods.test"), "/").await;
        assert_eq!(status, 502, "{body}");
        drop(conn);
        assert_eq!(until_zero(&rude_activity).await, 0);
    }
}
