//! The node port's listener: TLS handshakes in tasks of their own (a client that stalls
//! its handshake holds up no one), and each connection's peer certificate, if any, handed to
//! the handlers as the connection's address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A handshake that takes longer has failed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in flight at once; accepts wait past this.
const MAX_HANDSHAKES: usize = 64;

/// Who a connection is from: its address, and the SHA-256 of the client certificate it
/// showed (`None`: it showed none, and may only join).
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub cert_sha256: Option<String>,
}

impl Connected<IncomingStream<'_, NodeListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, NodeListener>) -> Self {
        stream.remote_addr().clone()
    }
}

pub struct NodeListener {
    handshaken: mpsc::Receiver<(TlsStream<TcpStream>, Peer)>,
    local: SocketAddr,
}

impl NodeListener {
    /// Accepts on `tcp` until the returned task is aborted.
    pub fn spawn(
        tcp: TcpListener,
        tls: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<(NodeListener, tokio::task::JoinHandle<()>)> {
        let local = tcp.local_addr()?;
        let (tx, handshaken) = mpsc::channel(MAX_HANDSHAKES);
        let acceptor = TlsAcceptor::from(tls);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        let accepting = tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (tcp, addr) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of descriptors, most likely: back off rather than spin.
                        tracing::warn!("node port accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let shaken =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
                    drop(slot);
                    match shaken {
                        Ok(Ok(tls)) => {
                            let cert_sha256 = tls
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .map(|cert| berth_cluster::fingerprint(cert));
                            let _ = tx.send((tls, Peer { addr, cert_sha256 })).await;
                        }
                        Ok(Err(e)) => tracing::info!(peer = %addr, "node port handshake: {e}"),
                        Err(_) => tracing::info!(peer = %addr, "node port handshake timed out"),
                    }
                });
            }
        });
        Ok((NodeListener { handshaken, local }, accepting))
    }
}

impl axum::serve::Listener for NodeListener {
    type Io = TlsStream<TcpStream>;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(accepted) => accepted,
            // The accept task is gone: the server is stopping.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Peer {
            addr: self.local,
            cert_sha256: None,
        })
    }
}
