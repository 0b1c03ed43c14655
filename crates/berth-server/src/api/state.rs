//! What the handlers reach: the control plane's services, never the node or the store.

use std::sync::Arc;

use crate::access::PodAccess;
use crate::cluster::Cluster;
use crate::deployments::Deployments;
use crate::images::Images;
use crate::lifecycle::Lifecycle;
use crate::node::Node;
use crate::nodes::Nodes;
use crate::profile::Tokens;
use crate::secrets::Secrets;
use crate::storage::Storage;

pub struct AppState<N: Node> {
    pub lifecycle: Arc<Lifecycle<N>>,
    pub deployments: Arc<Deployments<N>>,
    pub images: Images<N>,
    pub storage: Storage<N>,
    pub secrets: Secrets,
    pub nodes: Nodes,
    /// Workers may join; `None` without `--node-listen`.
    pub cluster: Option<Cluster>,
    pub tokens: Tokens,
    pub access: Arc<PodAccess>,
    pub metrics: Arc<berth_proxy::ProxyMetrics>,
    /// The largest code upload accepted, in bytes.
    pub max_code_bytes: u64,
}
