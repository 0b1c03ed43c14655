//! The nodes of the control plane: this machine registers itself under an id kept in its
//! state directory, with the capacity it offers, and heartbeats; `GET /v1/nodes` shows every
//! registered node with what its live pods ask for. Workers on other machines will register
//! through the same rows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_api::{NodeInfo, NodeStatus};
use berth_cluster::HEARTBEAT_INTERVAL;
use rand::Rng;

use crate::lifecycle::now;
use crate::store::{NodeRow, Store, StoreError};

/// A node whose last heartbeat is older than this many seconds is shown unreachable.
const UNREACHABLE_AFTER_SECONDS: i64 = 3 * HEARTBEAT_INTERVAL.as_secs() as i64;

/// The file in the state directory that keeps the node's id.
const NODE_ID_FILE: &str = "node-id";

#[derive(Debug, thiserror::Error)]
pub enum NodesError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the node id {path}: {source}")]
    IdFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the node id {path} holds {text:?}, not node-<12 hex>")]
    BadId { path: PathBuf, text: String },
    #[error("no node {0}")]
    NoNode(String),
    #[error("{0} is this server's own node")]
    Own(String),
    #[error("{pods} containers that have not ended are placed on {id}; stop them first")]
    Busy { id: String, pods: u64 },
}

/// This machine's node id: the one in the state directory, or a new one kept there.
pub fn node_id(state_dir: &Path) -> Result<String, NodesError> {
    let path = state_dir.join(NODE_ID_FILE);
    let io = |source| NodesError::IdFile {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            if !is_node_id(id) {
                return Err(NodesError::BadId {
                    path,
                    text: text.clone(),
                });
            }
            Ok(id.to_string())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = new_node_id();
            // Written whole or not at all: a crash never leaves half an id.
            berth_pki::write_atomically(&path, format!("{id}\n").as_bytes(), 0o644).map_err(io)?;
            Ok(id)
        }
        Err(e) => Err(io(e)),
    }
}

/// A node id no node has had: `node-<12 hex>`.
pub fn new_node_id() -> String {
    format!("node-{:012x}", rand::rng().random::<u64>() >> 16)
}

fn is_node_id(id: &str) -> bool {
    id.strip_prefix("node-").is_some_and(|hex| {
        hex.len() == 12 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// The nodes as the API shows them.
#[derive(Clone)]
pub struct Nodes {
    store: Store,
    /// This server's own node, which stays.
    own: String,
}

impl Nodes {
    pub fn new(store: Store, own: String) -> Self {
        Nodes { store, own }
    }

    /// Forgets a node that has left, and revokes the certificate it joined with: its next
    /// heartbeat is refused and the worker stops.
    pub async fn delete(&self, id: &str) -> Result<(), NodesError> {
        if id == self.own {
            return Err(NodesError::Own(id.to_string()));
        }
        let pods = self.store.node_usage().await?.get(id).map_or(0, |u| u.pods);
        if pods > 0 {
            return Err(NodesError::Busy {
                id: id.to_string(),
                pods,
            });
        }
        if !self.store.delete_node(id).await? {
            return Err(NodesError::NoNode(id.to_string()));
        }
        tracing::info!(node = %id, "node deleted; its certificate no longer works");
        Ok(())
    }

    /// Registers `node` (again, after a restart) and keeps heartbeating for it until the
    /// returned task is aborted.
    pub async fn register(&self, node: NodeRow) -> Result<tokio::task::JoinHandle<()>, NodesError> {
        self.store.register_node(&node).await?;
        let placed = self.store.place_unplaced(&node.id).await?;
        if placed > 0 {
            tracing::info!(node = %node.id, placed, "containers from before nodes placed on this node");
        }
        let store = self.store.clone();
        Ok(tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                // A store that is away for a beat is logged, not fatal: the next beat may
                // reach it, and the node's pods run on regardless.
                match store.heartbeat_node(&node.id, now()).await {
                    Ok(true) => {}
                    Ok(false) => {
                        if let Err(e) = store.register_node(&node).await {
                            tracing::warn!(node = %node.id, "registering again: {e}");
                        }
                    }
                    Err(e) => tracing::warn!(node = %node.id, "heartbeat: {e}"),
                }
            }
        }))
    }

    pub async fn list(&self) -> Result<Vec<NodeInfo>, NodesError> {
        let mut usage = self.store.node_usage().await?;
        let now = now();
        Ok(self
            .store
            .nodes()
            .await?
            .into_iter()
            .map(|n| {
                let used = usage.remove(&n.id).unwrap_or_default();
                NodeInfo {
                    status: status_at(n.heartbeat_at, now),
                    id: n.id,
                    hostname: n.hostname,
                    cpu_millis: n.cpu_millis,
                    memory_mib: n.memory_mib,
                    runtimes: n.runtimes,
                    labels: n.labels,
                    pods: used.pods,
                    cpu_requested_millis: used.cpu_millis,
                    memory_requested_mib: used.memory_mib,
                    started_at: n.started_at,
                    heartbeat_at: n.heartbeat_at,
                }
            })
            .collect())
    }
}

/// Whether a node with this latest heartbeat is up at `now`.
pub fn is_up(heartbeat_at: i64, now: i64) -> bool {
    status_at(heartbeat_at, now) == NodeStatus::Ready
}

fn status_at(heartbeat_at: i64, now: i64) -> NodeStatus {
    if now - heartbeat_at > UNREACHABLE_AFTER_SECONDS {
        NodeStatus::Unreachable
    } else {
        NodeStatus::Ready
    }
}

/// A control plane's own machine's row as it registers now; `schedulable` unless it takes
/// no pods.
pub fn this_node(
    id: String,
    runtimes: Vec<String>,
    labels: BTreeMap<String, String>,
    schedulable: bool,
) -> NodeRow {
    let (cpu_millis, memory_mib) = berth_cluster::facts::capacity();
    let at = now();
    NodeRow {
        id,
        hostname: berth_cluster::facts::hostname(),
        cpu_millis,
        memory_mib,
        runtimes,
        labels,
        started_at: at,
        heartbeat_at: at,
        agent_address: None,
        schedulable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = node_id(dir.path()).expect("new id");
        assert!(is_node_id(&id), "{id}");
        assert_eq!(node_id(dir.path()).expect("kept id"), id);
        std::fs::write(dir.path().join(NODE_ID_FILE), "../../etc").expect("write");
        assert!(matches!(node_id(dir.path()), Err(NodesError::BadId { .. })));
    }

    #[test]
    fn a_node_past_three_missed_heartbeats_is_unreachable() {
        assert_eq!(status_at(100, 100), NodeStatus::Ready);
        assert_eq!(status_at(100, 115), NodeStatus::Ready);
        assert_eq!(status_at(100, 116), NodeStatus::Unreachable);
    }
}
