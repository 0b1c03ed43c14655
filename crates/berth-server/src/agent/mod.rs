//! The node boundary over the network: a worker serves its [`Node`](crate::node::Node) on
//! an agent port (`berth worker --agent-listen`), and the control plane reaches it through a
//! [`RemoteNode`]. Both sides show certificates from the cluster CA: the worker's names its
//! node id, and the worker lets in only the control plane's (see `berth_cluster`).
//!
//! The protocol is JSON over HTTP/1.1 on TLS. Progress, logs and ends stream; a pod's port
//! is reached by upgrading a request to a raw byte tunnel, so pod networks never route
//! between machines. Ends are kept in a numbered log the control plane polls, so an end
//! that happens while the control plane is away is read when it comes back.

mod events;
mod remote;
mod serve;
mod tunnel;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use remote::RemoteNode;
pub use serve::{serve, AgentPort};

use crate::node::{NodeEvent, PreparedImage};

/// The HTTP upgrade a tunnel to a pod's port asks for.
const TUNNEL_PROTOCOL: &str = "berth-tunnel";
/// How often a prepare that is still going says so, so a worker that went away is noticed.
const ALIVE_EVERY: Duration = Duration::from_secs(10);
/// How long the control plane waits for a word from a prepare before it gives up.
const SILENCE_LIMIT: Duration = Duration::from_secs(60);
/// How long a poll for ends waits for one before it answers with none.
const POLL_WAIT: Duration = Duration::from_secs(20);

/// `POST /v1/agent/images`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrepareRequest {
    image: berth_api::ImageSource,
}

/// One line of the answer to a prepare.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PrepareLine {
    Progress(String),
    /// Nothing new, but still at it.
    Alive,
    Prepared(PreparedImage),
    Failed(String),
}

/// `POST /v1/agent/containers/{id}/stop`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StopRequest {
    /// A canonical signal name, `SIGTERM`.
    signal: String,
    grace_ms: u64,
}

/// `GET /v1/agent/events?epoch=E&after=N`: the ends numbered past `after`, or all of them
/// when the worker's `epoch` (one per worker process) is not `E`.
#[derive(Debug, Serialize, Deserialize)]
struct EventsQuery {
    #[serde(default)]
    epoch: Option<String>,
    #[serde(default)]
    after: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct EventBatch {
    epoch: String,
    /// The number of the last end in `events`, or `after` when there are none.
    last: u64,
    events: Vec<NodeEvent>,
}

/// An error, as the worker sends it.
#[derive(Debug, Serialize, Deserialize)]
struct AgentError {
    message: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct LogsQuery {
    #[serde(default)]
    follow: bool,
}

/// Container ids as the control plane makes them; anything else is refused before it can
/// name a path on the worker.
fn valid_container_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}
