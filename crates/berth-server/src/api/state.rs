//! What the handlers reach: the control plane's services, never the node or the store.

use std::sync::Arc;

use crate::images::Images;
use crate::lifecycle::Lifecycle;
use crate::node::Node;
use crate::profile::Tokens;

pub struct AppState<N: Node> {
    pub lifecycle: Arc<Lifecycle<N>>,
    pub images: Images<N>,
    pub tokens: Tokens,
    pub metrics: Arc<berth_proxy::ProxyMetrics>,
}
