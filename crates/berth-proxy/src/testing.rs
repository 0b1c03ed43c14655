//! Test fixtures shared by the ingress tests: a scripted upstream, raw HTTP/1.1 client
//! helpers, and an ingress on a loopback port.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::{Activity, Ingress, ProxyMetrics, Route, RouteTable};

/// An upstream that answers each request with its request line and X-Forwarded-For, and
/// on `Upgrade` switches protocols and echoes bytes.
pub(crate) async fn upstream() -> u16 {
    upstream_answering(|head| {
        let line = head.lines().next().unwrap_or("");
        let xff = header(head, "x-forwarded-for");
        format!("{line} xff={xff}")
    })
    .await
}

/// Like [`upstream`], with the response body made from the request head by `answer`.
pub(crate) async fn upstream_answering(answer: fn(&str) -> String) -> u16 {
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
                    let body = answer(&head);
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

/// The value of header `name` (as the ingress writes it: lower case) in a request head.
pub(crate) fn header<'a>(head: &'a str, name: &str) -> &'a str {
    head.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
        .unwrap_or("")
}

pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Serves `ingress` on a loopback port.
pub(crate) async fn serve_on_loopback(ingress: Ingress) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(crate::serve(listener, Arc::new(ingress)));
    addr
}

/// An ingress for `pods.test` over `routes`, without a route-miss hook.
pub(crate) async fn start(routes: Arc<RouteTable>) -> (SocketAddr, Arc<ProxyMetrics>) {
    let metrics = Arc::new(ProxyMetrics::default());
    let addr = serve_on_loopback(Ingress::new("pods.test", routes, metrics.clone())).await;
    (addr, metrics)
}

pub(crate) fn route(id: &str, port: u16) -> (Route, Arc<Activity>) {
    let activity = Arc::new(Activity::default());
    let route = Route {
        container_id: id.into(),
        addrs: vec!["127.0.0.1".parse().expect("ip")],
        ports: vec![port],
        activity: activity.clone(),
        authorized: false,
        via: None,
    };
    (route, activity)
}

/// Sends one request on `conn` and reads one response (status, body).
pub(crate) async fn request(conn: &mut TcpStream, host: &str, path: &str) -> (u16, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    conn.write_all(req.as_bytes()).await.expect("write");
    read_response(conn).await
}

pub(crate) async fn read_response(conn: &mut TcpStream) -> (u16, String) {
    let (head, body) = read_head_and_body(conn).await;
    let status = head[9..12].parse().expect("status");
    (status, body)
}

/// The whole response as text, head (with headers) and body, for asserting on headers.
pub(crate) async fn raw_request(conn: &mut TcpStream, host: &str, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    conn.write_all(req.as_bytes()).await.expect("write");
    let (head, body) = read_head_and_body(conn).await;
    format!("{head}\r\n\r\n{body}")
}

async fn read_head_and_body(conn: &mut TcpStream) -> (String, String) {
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
        let head = String::from_utf8_lossy(&buf[..end]).to_string();
        let len: usize = head
            .to_ascii_lowercase()
            .lines()
            .find_map(|l| l.strip_prefix("content-length: ").map(str::to_string))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buf.len() >= end + 4 + len {
            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
            return (head, body);
        }
    }
}
