//! The control plane's side of a tunnel: a TLS connection to the worker's agent port,
//! upgraded to a byte stream to one pod address.

use std::net::SocketAddr;
use std::sync::Arc;

use berth_proxy::{Tunnel, UpstreamIo};
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::TUNNEL_PROTOCOL;

pub(super) struct AgentTunnel {
    node_id: String,
    agent: SocketAddr,
    tls: TlsConnector,
}

impl std::fmt::Debug for AgentTunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentTunnel")
            .field("node_id", &self.node_id)
            .field("agent", &self.agent)
            .finish()
    }
}

impl AgentTunnel {
    pub fn new(node_id: String, agent: SocketAddr, tls: Arc<rustls::ClientConfig>) -> Self {
        AgentTunnel {
            node_id,
            agent,
            tls: TlsConnector::from(tls),
        }
    }

    async fn open_to(&self, target: SocketAddr) -> std::io::Result<Box<dyn UpstreamIo>> {
        let tcp = tokio::net::TcpStream::connect(self.agent).await?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(self.node_id.clone())
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let tls = self.tls.connect(name, tcp).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let req = hyper::Request::get(format!(
            "/v1/agent/forward/{}/{}",
            target.ip(),
            target.port()
        ))
        .header(header::HOST, &self.node_id)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, TUNNEL_PROTOCOL)
        .body(Empty::<Bytes>::new())
        .map_err(std::io::Error::other)?;
        let response = sender
            .send_request(req)
            .await
            .map_err(std::io::Error::other)?;
        if response.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let message = serde_json::from_slice::<super::AgentError>(&body)
                .map(|e| e.message)
                .unwrap_or_else(|_| status.to_string());
            return Err(std::io::Error::other(message));
        }
        let upgraded = hyper::upgrade::on(response)
            .await
            .map_err(std::io::Error::other)?;
        Ok(Box::new(TokioIo::new(upgraded)))
    }
}

impl Tunnel for AgentTunnel {
    fn open(&self, addr: SocketAddr) -> BoxFuture<'_, std::io::Result<Box<dyn UpstreamIo>>> {
        Box::pin(self.open_to(addr))
    }
}
