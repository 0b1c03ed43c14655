//! The accept seam: where client connections come from, and what happens to each before HTTP
//! is spoken over it (nothing for plain TCP, the TLS handshake for a TLS listener).
//!
//! Accepting and handshaking are two steps on purpose: [`serve`](crate::serve) calls
//! `accept` in its loop but awaits `handshake` inside the connection's own task, so a slow or
//! stalled client (one that never finishes its TLS hello) cannot hold up the next accept.
//! A wrapper listener (TLS, PROXY protocol) keeps the inner `accept` and chains its own work
//! after the inner `handshake`.

use std::future::{self, Future};
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

/// A source of client connections for the ingress.
pub trait Listener: Send + 'static {
    /// A connection as accepted, before its handshake.
    type Conn: Send + 'static;
    /// The connection once its handshake is done, carrying HTTP.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Waits for the next connection and the address of its peer. Should return quickly
    /// once a connection is there: anything slow belongs in `handshake`.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Conn, SocketAddr)>> + Send;

    /// Readies one accepted connection for HTTP. The returned future owns what it needs
    /// (`'static`) because it runs in the connection's task, after `accept` has moved on; the
    /// ingress gives it as long as a client has to send a request head.
    fn handshake(
        &self,
        conn: Self::Conn,
    ) -> impl Future<Output = io::Result<Self::Io>> + Send + 'static;

    /// The scheme clients speak to this listener, passed on as `X-Forwarded-Proto`.
    fn scheme(&self) -> &'static str {
        "http"
    }

    /// The server name the client asked for in its handshake (TLS SNI), if any. A request
    /// for another host on that connection is misdirected (421).
    fn server_name(_io: &Self::Io) -> Option<String> {
        None
    }
}

impl Listener for TcpListener {
    type Conn = TcpStream;
    type Io = TcpStream;

    async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        TcpListener::accept(self).await
    }

    fn handshake(
        &self,
        conn: TcpStream,
    ) -> impl Future<Output = io::Result<TcpStream>> + Send + 'static {
        // Nothing to wait for on plain TCP. Requests and responses are small and
        // latency-bound: send segments at once.
        let _ = conn.set_nodelay(true);
        future::ready(Ok(conn))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::testing::{header, request, route, upstream_answering};
    use crate::{Ingress, ProxyMetrics, RouteTable};

    /// Stands in for TLS: each connection must first send `hello\n`, read in the
    /// connection's task; counts finished handshakes and reports its own scheme.
    struct Hello<L> {
        inner: L,
        handshakes: Arc<AtomicUsize>,
    }

    impl<L: Listener> Listener for Hello<L> {
        type Conn = L::Conn;
        type Io = L::Io;

        fn accept(&mut self) -> impl Future<Output = io::Result<(L::Conn, SocketAddr)>> + Send {
            self.inner.accept()
        }

        fn handshake(
            &self,
            conn: L::Conn,
        ) -> impl Future<Output = io::Result<L::Io>> + Send + 'static {
            let inner = self.inner.handshake(conn);
            let handshakes = self.handshakes.clone();
            async move {
                let mut io = inner.await?;
                let mut hello = [0u8; 6];
                io.read_exact(&mut hello).await?;
                if &hello != b"hello\n" {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "no hello"));
                }
                handshakes.fetch_add(1, Ordering::SeqCst);
                Ok(io)
            }
        }

        fn scheme(&self) -> &'static str {
            "hello"
        }
    }

    #[tokio::test]
    async fn a_wrapping_listener_handshakes_in_the_connection_task() {
        let port = upstream_answering(|head| {
            let proto = header(head, "x-forwarded-proto");
            format!("{} proto={proto}", head.lines().next().unwrap_or(""))
        })
        .await;
        let routes = Arc::new(RouteTable::new());
        routes.insert("stub", route("pod-stub-1", port).0);
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = tcp.local_addr().expect("addr");
        let handshakes = Arc::new(AtomicUsize::new(0));
        let listener = Hello {
            inner: tcp,
            handshakes: handshakes.clone(),
        };
        let ingress = Ingress::new("pods.test", routes, Arc::new(ProxyMetrics::default()));
        tokio::spawn(crate::serve(listener, Arc::new(ingress)));
        let host = format!("stub-{port}.pods.test");

        // A client stuck in its handshake does not keep the next one from being served.
        let mut stalled = TcpStream::connect(addr).await.expect("connect");
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        conn.write_all(b"hello\n").await.expect("write");
        let (status, body) = request(&mut conn, &host, "/").await;
        assert_eq!((status, body.as_str()), (200, "GET / HTTP/1.1 proto=hello"));
        assert_eq!(handshakes.load(Ordering::SeqCst), 1);

        stalled.write_all(b"hello\n").await.expect("write");
        let (status, _) = request(&mut stalled, &host, "/").await;
        assert_eq!(status, 200);
        assert_eq!(handshakes.load(Ordering::SeqCst), 2);

        // A failed handshake closes that connection without an HTTP answer.
        let mut rude = TcpStream::connect(addr).await.expect("connect");
        rude.write_all(b"GET / HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        let mut rest = Vec::new();
        let _ = rude.read_to_end(&mut rest).await;
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    }
}
