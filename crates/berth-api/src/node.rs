//! The machines that run pods, as `GET /v1/nodes` and `berth node list` show them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A node's standing, from its heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodeStatus {
    /// Its last heartbeat is recent.
    Ready,
    /// No heartbeat for longer than the control plane waits for one.
    Unreachable,
}

impl std::fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeStatus::Ready => "READY",
            NodeStatus::Unreachable => "UNREACHABLE",
        })
    }
}

/// One machine that runs pods: what it registered, and what its live pods asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeInfo {
    /// `node-<12 hex>`, kept in the node's state directory across restarts.
    pub id: String,
    pub hostname: String,
    pub status: NodeStatus,
    /// The CPUs it offers, in thousandths of a core.
    pub cpu_millis: u64,
    /// The memory it offers, in MiB.
    pub memory_mib: u64,
    /// The runtimes it runs pods with, its default first.
    pub runtimes: Vec<String>,
    /// The operator's labels (`--node-label KEY=VALUE`).
    pub labels: BTreeMap<String, String>,
    /// Containers on it that have not ended.
    pub pods: u64,
    /// What those containers asked for.
    pub cpu_requested_millis: u64,
    pub memory_requested_mib: u64,
    /// Unix seconds of its latest start.
    pub started_at: i64,
    /// Unix seconds of its latest heartbeat.
    pub heartbeat_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeList {
    pub nodes: Vec<NodeInfo>,
}

/// `POST /v1/nodes/join-tokens`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJoinTokenRequest {
    /// How long the token lets workers join, in seconds; an hour when absent.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// A join token lives at most this long.
pub const MAX_JOIN_TOKEN_TTL_SECONDS: u64 = 7 * 24 * 3600;
pub const DEFAULT_JOIN_TOKEN_TTL_SECONDS: u64 = 3600;

/// A new join token, shown once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JoinTokenCreated {
    pub token: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// The control plane's node port, as workers are told to reach it; change the host to
    /// one the workers can reach when it is a wildcard.
    pub node_address: String,
    /// The command that joins a worker with this token.
    pub join_command: String,
}

/// The longest label key or value.
pub const MAX_NODE_LABEL_LEN: usize = 63;

/// A node label as an operator writes it: `KEY=VALUE`, the key lowercase letters, digits and
/// `-_./`, the value letters, digits and `-_.`, each at most 63 characters.
pub fn parse_node_label(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))?;
    let key_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_./".contains(&b);
    if key.is_empty() || key.len() > MAX_NODE_LABEL_LEN || !key.bytes().all(key_ok) {
        return Err(format!(
            "the label key {key:?} must be 1 to {MAX_NODE_LABEL_LEN} of a-z, 0-9, -, _, ., /"
        ));
    }
    let value_ok = |b: u8| b.is_ascii_alphanumeric() || b"-_.".contains(&b);
    if value.len() > MAX_NODE_LABEL_LEN || !value.bytes().all(value_ok) {
        return Err(format!(
            "the label value {value:?} must be at most {MAX_NODE_LABEL_LEN} of A-Z, a-z, 0-9, -, _, ."
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_key_equals_value() {
        assert_eq!(
            parse_node_label("pool=gpu-a100"),
            Ok(("pool".into(), "gpu-a100".into()))
        );
        assert_eq!(
            parse_node_label("berth.dev/zone="),
            Ok(("berth.dev/zone".into(), String::new()))
        );
        for bad in [
            "pool", "=gpu", "Pool=gpu", "pool=a b", "pool=a=b", "k=\u{e9}",
        ] {
            assert!(parse_node_label(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_node_label(&format!("{}=x", "k".repeat(64))).is_err());
    }
}
