//! The accept loop, and one task per client connection: the listener's handshake, then
//! HTTP/1.1 or HTTP/2 (by ALPN over TLS, by the client's preface in the clear) under the
//! request-head limits, each request handed to the ingress phases.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

use crate::ingress::{handle, ClientConn, Ingress};
use crate::metrics::bump;
use crate::Listener;

/// Largest request head accepted; bigger gets 431 (HTTP/1.1) or the stream refused (HTTP/2).
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;
/// A client has this long to send a complete request head (slowloris guard), and as long
/// again to finish the listener's handshake.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 connections are pinged this often when quiet, and dropped if a ping goes
/// unanswered as long: a vanished client must not hold its streams (and its pod) open.
const H2_PING: Duration = Duration::from_secs(20);

/// Serves `ingress` on `listener` until the task is dropped, or until the ingress drains:
/// then it stops accepting and returns, while the connections' own tasks go on.
pub async fn serve<L: Listener>(mut listener: L, ingress: Arc<Ingress>) {
    let scheme = listener.scheme();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = ingress.drain.started() => return,
        };
        let (conn, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!("ingress accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        bump(&ingress.metrics.connections);
        // Only build the handshake here; it is awaited in the connection's task, so a
        // client that is slow to finish it does not delay the next accept.
        let handshake = listener.handshake(conn);
        let ingress = ingress.clone();
        let open = ingress.drain.hold();
        tokio::spawn(async move {
            let _open = open;
            let io = match tokio::time::timeout(HEAD_TIMEOUT, handshake).await {
                Ok(Ok(io)) => io,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "ingress handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "ingress handshake timed out");
                    return;
                }
            };
            let server_name = L::server_name(&io);
            serve_connection(ingress, io, ClientConn::new(peer, scheme, server_name)).await;
        });
        // One connection per turn, as nginx's workers take them: when several ingress
        // threads share the socket, a burst of connections is spread over all of them.
        tokio::task::yield_now().await;
    }
}

async fn serve_connection<Io>(ingress: Arc<Ingress>, io: Io, client: ClientConn)
where
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let peer = client.peer;
    let ingress_drain = ingress.drain.clone();
    // Held for the connection's life: dropping it (the client going away) releases the
    // connection's count against its pod and closes its idle upstream connection.
    let client = Arc::new(client);
    let first_request = Arc::new(FirstRequest::default());
    let seen = first_request.clone();
    let service = service_fn(move |req| {
        seen.arrived();
        let ingress = ingress.clone();
        let client = client.clone();
        async move { Ok::<_, Infallible>(handle(&ingress, &client, req).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .keep_alive_interval(H2_PING)
        .keep_alive_timeout(H2_PING);
    let drain = ingress_drain.clone();
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    // Draining: the request in flight is answered, then HTTP/1.1 closes the connection and
    // HTTP/2 sends GOAWAY.
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = drain.started() => 'drained: {
            // A client that connected just before the drain may not have sent its request
            // yet; it cannot know, and hyper would close such a connection unanswered. Its
            // first request is still answered, if it comes within the head timeout.
            if !first_request.has_arrived() {
                tokio::select! {
                    result = conn.as_mut() => break 'drained result,
                    () = first_request.wait() => {}
                    () = tokio::time::sleep(HEAD_TIMEOUT) => {}
                }
            }
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, "ingress connection ended: {e}");
    }
}

/// Whether a connection has begun its first request.
#[derive(Default)]
struct FirstRequest {
    arrived: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl FirstRequest {
    fn arrived(&self) {
        if !self.arrived.swap(true, std::sync::atomic::Ordering::SeqCst) {
            // A stored permit: a waiter that comes later still wakes.
            self.notify.notify_one();
        }
    }

    fn has_arrived(&self) -> bool {
        self.arrived.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn wait(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;
    use crate::testing::{route, start as ingress, upstream};
    use crate::RouteTable;

    /// A client that connected before the drain began, and sends its request after, is
    /// answered (hyper alone closes such a connection with no answer).
    #[tokio::test]
    async fn a_connection_made_before_the_drain_gets_its_answer() {
        let port = upstream().await;
        let routes = Arc::new(RouteTable::new());
        routes.insert("stub", route("pod-stub-1", port).0);
        let ingress = Arc::new(crate::Ingress::new(
            "pods.test",
            routes,
            Arc::new(crate::ProxyMetrics::default()),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(crate::serve(listener, ingress.clone()));
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        // Accepted and idle when the drain starts.
        while ingress.drain().open() == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        ingress.drain().start();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let host = format!("stub-{port}.pods.test");
        let (status, body) = crate::testing::request(&mut conn, &host, "/late").await;
        assert_eq!(
            (status, body.starts_with("GET /late")),
            (200, true),
            "{body}"
        );
        // And then the connection closes: the drain goes on.
        let mut rest = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            conn.read_to_end(&mut rest),
        )
        .await;
        assert!(matches!(read, Ok(Ok(_))), "the connection stayed open");
        ingress
            .drain()
            .wait_closed(std::time::Duration::from_secs(5))
            .await;
        assert_eq!(ingress.drain().open(), 0);
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
        // The ingress must answer 431 or close the connection; a connection left open fails.
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            conn.read_to_end(&mut buf),
        )
        .await
        .expect("the ingress neither answered nor closed the connection");
        let text = String::from_utf8_lossy(&buf);
        match read {
            Ok(_) if text.is_empty() => {}
            Ok(_) => assert!(
                text.starts_with("HTTP/1.1 431"),
                "an oversized head must get 431, got: {text}"
            ),
            // A reset is a close too, as long as nothing was forwarded.
            Err(_) => assert!(
                text.is_empty() || text.starts_with("HTTP/1.1 431"),
                "{text}"
            ),
        }
    }
}
