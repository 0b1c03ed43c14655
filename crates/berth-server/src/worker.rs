//! `berth worker`'s node: this machine's pods, run for a control plane that reaches them
//! through the agent port. Joining, registering and heartbeating are the command's; the
//! worker keeps no state of the control plane's, only its pods'.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use berth_cluster::Identity;

use crate::node::{LocalNode, Node as _};
use crate::{NodeSettings, ServerError};

/// A running worker node; dropping it closes the agent port and leaves the pods running,
/// for the next start to adopt.
pub struct WorkerNode {
    node: Arc<LocalNode>,
    _port: crate::agent::AgentPort,
    agent_addr: SocketAddr,
}

impl WorkerNode {
    /// Opens the node under `state_dir` and serves it on `listen` with the worker's
    /// `identity` (its certificate from joining).
    pub async fn start(
        state_dir: &Path,
        settings: &NodeSettings,
        listen: SocketAddr,
        identity: &Identity,
    ) -> Result<WorkerNode, ServerError> {
        let network = settings.network(state_dir)?;
        let node = settings.open_node(state_dir, network)?;
        let listen_err = |source| ServerError::Listen {
            what: "agent port",
            addr: listen,
            source,
        };
        let tcp = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(listen_err)?;
        let agent_addr = tcp.local_addr().map_err(listen_err)?;
        let tls = berth_cluster::agent_server(
            identity.ca.clone(),
            identity.cert.clone(),
            identity.key.clone_key(),
        )
        .map_err(crate::cluster::ClusterError::from)?;
        let mut pod_subnets = vec![ipnet::IpNet::V4(settings.subnet_v4)];
        pod_subnets.extend(settings.subnet_v6.map(ipnet::IpNet::V6));
        let port = crate::agent::serve(node.clone(), tcp, tls, pod_subnets).map_err(listen_err)?;
        Ok(WorkerNode {
            node,
            _port: port,
            agent_addr,
        })
    }

    /// Where the agent port listens.
    pub fn agent_addr(&self) -> SocketAddr {
        self.agent_addr
    }

    /// The runtimes this worker runs pods with, its default first.
    pub fn runtimes(&self) -> Vec<String> {
        self.node
            .runtimes()
            .iter()
            .map(|k| k.as_str().to_string())
            .collect()
    }

    /// On a clean stop: the warm networks and the bridge go if no pod needs them.
    pub fn release_host_resources(&self) {
        self.node.release_host_resources();
    }
}
