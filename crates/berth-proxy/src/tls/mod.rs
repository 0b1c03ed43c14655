//! TLS for the ingress: a [`Listener`] that reads each ClientHello, asks a [`CertSource`] for
//! the configuration that serves its server name (the local CA, the operator's files, or
//! ACME), and finishes the handshake offering HTTP/2 and HTTP/1.1 by ALPN.
//!
//! The ClientHello is read before any certificate is chosen (rustls' lazy acceptor), so a
//! source may do slow work for a name it has not seen (issue a certificate, talk to an ACME
//! server) inside that one connection's task.

mod acme;
mod files;
mod local_ca;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

pub use acme::{Acme, AcmeChallenges, AcmeConfig};
pub use files::CertFiles;
pub use local_ca::LocalCa;

use crate::Listener;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {message}")]
    BadPem { path: PathBuf, message: String },
    #[error("making a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("ACME: {0}")]
    Acme(String),
    #[error(transparent)]
    Ca(#[from] berth_pki::PkiError),
}

/// Where the ingress's certificates come from.
pub trait CertSource: Send + Sync + 'static {
    /// The configuration for a handshake that names `server_name` (lower case, already
    /// checked to be the ingress's domain or one label under it).
    fn config_for<'a>(
        &'a self,
        server_name: &'a str,
    ) -> BoxFuture<'a, Result<Arc<ServerConfig>, TlsError>>;
}

/// A rustls configuration serving one certificate chain, with HTTP/2 and HTTP/1.1 by ALPN.
pub(crate) fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

pub(crate) use berth_pki::write_atomically;

/// The ingress's TLS listener: plain TCP accepts, the TLS handshake in the connection's task.
pub struct TlsListener {
    tcp: TcpListener,
    domain: Arc<str>,
    certs: Arc<dyn CertSource>,
}

impl TlsListener {
    /// Serves names under `domain` (lower case) with certificates from `certs`.
    pub fn new(tcp: TcpListener, domain: &str, certs: Arc<dyn CertSource>) -> Self {
        Self {
            tcp,
            domain: domain.to_ascii_lowercase().into(),
            certs,
        }
    }
}

/// Whether the ingress answers for `name`: its domain, or one label under it (a pod host).
/// Anything else is refused in the handshake, before a certificate is made for it.
pub(crate) fn serves_name(name: &str, domain: &str) -> bool {
    name == domain
        || name
            .strip_suffix(domain)
            .and_then(|label| label.strip_suffix('.'))
            .is_some_and(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
}

impl Listener for TlsListener {
    type Conn = TcpStream;
    type Io = TlsStream<TcpStream>;

    async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        self.tcp.accept().await
    }

    fn handshake(
        &self,
        conn: TcpStream,
    ) -> impl Future<Output = io::Result<TlsStream<TcpStream>>> + Send + 'static {
        let domain = self.domain.clone();
        let certs = self.certs.clone();
        async move {
            let _ = conn.set_nodelay(true);
            let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), conn).await?;
            let name = start
                .client_hello()
                .server_name()
                .map(str::to_ascii_lowercase);
            // No name, or one this ingress does not serve: no certificate to offer.
            let Some(name) = name.filter(|n| serves_name(n, &domain)) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the client named no host this ingress serves",
                ));
            };
            let config = certs
                .config_for(&name)
                .await
                .map_err(|e| io::Error::other(format!("certificate for {name}: {e}")))?;
            start.into_stream(config).await
        }
    }

    fn scheme(&self) -> &'static str {
        "https"
    }

    fn server_name(io: &Self::Io) -> Option<String> {
        io.get_ref().1.server_name().map(str::to_ascii_lowercase)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{route, upstream};
    use crate::{Ingress, ProxyMetrics, RouteTable};
    use http_body_util::{BodyExt, Empty};
    use hyper::body::Bytes;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    /// An ingress behind TLS from a fresh local CA, and a client config trusting that CA.
    async fn tls_ingress(
        routes: Arc<RouteTable>,
    ) -> (SocketAddr, rustls::ClientConfig, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = LocalCa::load_or_create(dir.path()).expect("ca");
        let mut roots = rustls::RootCertStore::empty();
        let ca_pem = std::fs::read(ca.cert_path()).expect("ca pem");
        roots
            .add(rustls::pki_types::pem::PemObject::from_pem_slice(&ca_pem).expect("pem"))
            .expect("root");
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = tcp.local_addr().expect("addr");
        let ingress = Ingress::new("pods.test", routes, Arc::new(ProxyMetrics::default()));
        let listener = TlsListener::new(tcp, "pods.test", Arc::new(ca));
        tokio::spawn(crate::serve(listener, Arc::new(ingress)));
        let mut client = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"h2".to_vec()];
        (addr, client, dir)
    }

    async fn connect(
        addr: SocketAddr,
        client: &rustls::ClientConfig,
        name: &str,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client.clone()));
        let tcp = TcpStream::connect(addr).await?;
        let name = rustls::pki_types::ServerName::try_from(name.to_string()).expect("name");
        connector.connect(name, tcp).await
    }

    #[tokio::test]
    async fn http2_over_tls_with_a_certificate_from_the_local_ca() {
        let port = upstream().await;
        let routes = Arc::new(RouteTable::new());
        routes.insert("stub", route("pod-stub-1", port).0);
        let (addr, client, _dir) = tls_ingress(routes).await;
        let host = format!("stub-{port}.pods.test");
        let tls = connect(addr, &client, &host).await.expect("handshake");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .expect("h2");
        tokio::spawn(conn);
        let get = |uri: String| {
            hyper::Request::get(uri)
                .body(Empty::<Bytes>::new())
                .expect("request")
        };
        let resp = sender
            .send_request(get(format!("https://{host}/x?y")))
            .await
            .expect("response");
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        // The pod got HTTP/1.1 in origin form.
        assert_eq!(body, "GET /x?y HTTP/1.1 xff=127.0.0.1");

        // Another host on this connection was not what it was opened for.
        let resp = sender
            .send_request(get(format!("https://other-{port}.pods.test/")))
            .await
            .expect("response");
        assert_eq!(resp.status(), 421);
    }

    #[tokio::test]
    async fn over_http2_a_pod_is_held_while_a_response_streams_not_while_the_connection_idles() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A pod that sends its head and a first chunk, then holds the stream until told.
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let pod = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = pod.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let (mut s, _) = pod.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
                .await;
            let _ = released.await;
            let _ = s.write_all(b"0\r\n\r\n").await;
            let _ = s.read(&mut buf).await;
        });
        let routes = Arc::new(RouteTable::new());
        let (r, activity) = route("pod-stub-1", port);
        routes.insert("stub", r);
        let (addr, client, _dir) = tls_ingress(routes).await;
        let host = format!("stub-{port}.pods.test");
        let tls = connect(addr, &client, &host).await.expect("handshake");
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .expect("h2");
        tokio::spawn(conn);
        let resp = sender
            .send_request(
                hyper::Request::get(format!("https://{host}/stream"))
                    .body(Empty::<Bytes>::new())
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(resp.status(), 200);
        assert_eq!(
            activity.open_connections(),
            1,
            "the open stream holds the pod"
        );
        let _ = release.send(());
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(body, "hello");
        let mut idle = false;
        for _ in 0..100 {
            if activity.open_connections() == 0 {
                idle = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(
            idle,
            "the idle HTTP/2 connection (still open) does not hold the pod"
        );
        drop(sender);
    }

    #[tokio::test]
    async fn names_outside_the_domain_get_no_certificate() {
        let (addr, client, _dir) = tls_ingress(Arc::new(RouteTable::new())).await;
        assert!(connect(addr, &client, "example.com").await.is_err());
        assert!(connect(addr, &client, "a.b.pods.test").await.is_err());
        // The listener still serves after refusing them.
        assert!(connect(addr, &client, "abc-80.pods.test").await.is_ok());
    }

    #[test]
    fn names_under_the_domain_only() {
        for ok in ["pods.test", "abc-80.pods.test", "web-8888.pods.test"] {
            assert!(serves_name(ok, "pods.test"), "{ok}");
        }
        for bad in [
            "example.com",
            "a.b.pods.test",
            ".pods.test",
            "evilpods.test",
            "x_y.pods.test",
            "pods.test.evil",
        ] {
            assert!(!serves_name(bad, "pods.test"), "{bad}");
        }
    }
}
