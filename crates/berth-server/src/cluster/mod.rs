//! The control plane's side of workers joining (`--node-listen`): the cluster CA, join
//! tokens the API mints, and the node port where a worker joins with a token and then, by
//! its client certificate, registers what it offers and heartbeats. Only the control plane
//! talks to the store: workers never hold its credentials.

mod listener;
mod routes;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use berth_api::{JoinTokenCreated, DEFAULT_JOIN_TOKEN_TTL_SECONDS, MAX_JOIN_TOKEN_TTL_SECONDS};
use berth_cluster::{ClusterCa, JoinToken};

pub(crate) use crate::lifecycle::now;
use crate::store::{Store, StoreError};

pub(crate) use listener::NodeListener;
pub use listener::Peer;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cluster CA: {0}")]
    Ca(#[from] berth_cluster::ClusterError),
    #[error("cannot listen on {addr} for workers: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("ttl_seconds must be 1 to {MAX_JOIN_TOKEN_TTL_SECONDS}")]
    Ttl,
}

/// Workers joining this control plane.
#[derive(Clone)]
pub struct Cluster {
    ca: Arc<ClusterCa>,
    store: Store,
    node_address: SocketAddr,
    /// Woken when a worker registers, for the fleet to reach it at once.
    registered: Arc<tokio::sync::Notify>,
}

impl Cluster {
    /// The cluster of the CA kept under `state_dir`, taking workers at `node_address`.
    pub fn open(
        state_dir: &Path,
        store: Store,
        node_address: SocketAddr,
    ) -> Result<Self, ClusterError> {
        let ca = ClusterCa::load_or_create(&state_dir.join("cluster-ca"))?;
        Ok(Cluster {
            ca: Arc::new(ca),
            store,
            node_address,
            registered: Arc::default(),
        })
    }

    /// Woken each time a worker registers.
    pub fn registrations(&self) -> Arc<tokio::sync::Notify> {
        self.registered.clone()
    }

    /// A token that lets workers join for `ttl_seconds` (an hour by default).
    pub async fn mint_token(
        &self,
        ttl_seconds: Option<u64>,
    ) -> Result<JoinTokenCreated, ClusterError> {
        let ttl = ttl_seconds.unwrap_or(DEFAULT_JOIN_TOKEN_TTL_SECONDS);
        if !(1..=MAX_JOIN_TOKEN_TTL_SECONDS).contains(&ttl) {
            return Err(ClusterError::Ttl);
        }
        let now = now();
        self.store.delete_expired_join_tokens(now).await?;
        let token = JoinToken::mint(&self.ca.fingerprint());
        let expires_at = now + ttl as i64;
        self.store
            .insert_join_token(
                &token.id,
                &JoinToken::secret_sha256(&token.secret),
                expires_at,
                now,
            )
            .await?;
        let node_address = self.node_address.to_string();
        Ok(JoinTokenCreated {
            join_command: format!("berth worker --join {node_address} --token {token}"),
            token: token.to_string(),
            expires_at,
            node_address,
        })
    }

    /// The control plane's TLS for workers' agent ports: a certificate for it from the
    /// cluster CA, and that CA alone trusted.
    pub fn agent_client_tls(&self) -> Result<Arc<rustls::ClientConfig>, ClusterError> {
        Ok(Arc::new(self.ca.control_plane_identity()?.client_config()?))
    }

    /// Serves the node port on `tcp` until the returned task is aborted.
    pub fn serve(&self, tcp: tokio::net::TcpListener) -> Result<NodePort, ClusterError> {
        let (listener, accepting) = listener::NodeListener::spawn(tcp, self.ca.server_config()?)
            .map_err(|source| ClusterError::Listen {
                addr: self.node_address,
                source,
            })?;
        let app = routes::router(self.clone());
        let serving = tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<Peer>();
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("node port: {e}");
            }
        });
        Ok(NodePort { accepting, serving })
    }
}

/// The node port's tasks; dropping them stops it.
pub struct NodePort {
    accepting: tokio::task::JoinHandle<()>,
    serving: tokio::task::JoinHandle<()>,
}

impl Drop for NodePort {
    fn drop(&mut self) {
        self.accepting.abort();
        self.serving.abort();
    }
}
