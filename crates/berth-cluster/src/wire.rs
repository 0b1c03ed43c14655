//! What a worker and the control plane say to each other on the node port, as JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /v1/cluster/join`, the one request a worker makes without a certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub token_id: String,
    pub secret: String,
    /// A PKCS#10 request for the worker's own key, which never leaves it.
    pub csr_pem: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinResponse {
    pub node_id: String,
    pub cert_pem: String,
    pub ca_pem: String,
}

/// `POST /v1/cluster/register`: what the worker offers, sent at each start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    pub hostname: String,
    pub cpu_millis: u64,
    pub memory_mib: u64,
    pub runtimes: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// The port of the worker's agent, where the control plane sends pod operations and
    /// pod traffic (at the address the worker's requests come from); `None` for a worker
    /// that takes no pods.
    #[serde(default)]
    pub agent_port: Option<u16>,
}
