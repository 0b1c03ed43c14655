//! The worker's agent port: the control plane's pod operations carried out on this
//! machine's node, and tunnels to its pods' ports.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use hyper_util::rt::TokioIo;
use ipnet::IpNet;

use super::events::EventLog;
use super::{
    valid_container_id, AgentError, EventsQuery, LogsQuery, PrepareLine, PrepareRequest,
    StopRequest, ALIVE_EVERY, POLL_WAIT, TUNNEL_PROTOCOL,
};
use crate::cluster::NodeListener;
use crate::node::{Node, StartContainer};

/// How long a tunnel waits for the pod's port to accept.
const POD_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

struct Agent<N: Node> {
    node: N,
    events: EventLog,
    /// The pod networks: tunnels reach these addresses and no others on the worker.
    pod_subnets: Vec<IpNet>,
}

/// The agent port's tasks; dropping them stops it.
pub struct AgentPort {
    accepting: tokio::task::JoinHandle<()>,
    serving: tokio::task::JoinHandle<()>,
    draining: tokio::task::JoinHandle<()>,
}

impl Drop for AgentPort {
    fn drop(&mut self) {
        self.accepting.abort();
        self.serving.abort();
        self.draining.abort();
    }
}

/// Serves `node` to the control plane on `tcp` with the worker's TLS (see
/// `berth_cluster::agent_server`).
pub fn serve<N: Node>(
    node: N,
    tcp: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    pod_subnets: Vec<IpNet>,
) -> std::io::Result<AgentPort> {
    let mut ends = node.events();
    let agent = Arc::new(Agent {
        node,
        events: EventLog::new(),
        pod_subnets,
    });
    let draining = {
        let agent = agent.clone();
        tokio::spawn(async move {
            let Some(ends) = &mut ends else { return };
            while let Some(end) = ends.recv().await {
                agent.events.push(end);
            }
        })
    };
    let (listener, accepting) = NodeListener::spawn(tcp, tls)?;
    let app = router(agent);
    let serving = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("agent port: {e}");
        }
    });
    Ok(AgentPort {
        accepting,
        serving,
        draining,
    })
}

fn router<N: Node>(agent: Arc<Agent<N>>) -> Router {
    Router::new()
        .route("/v1/agent/images", post(prepare::<N>))
        .route("/v1/agent/containers", post(start::<N>).get(running::<N>))
        .route(
            "/v1/agent/containers/{id}",
            get(state::<N>).delete(teardown::<N>),
        )
        .route("/v1/agent/containers/{id}/stop", post(stop::<N>))
        .route("/v1/agent/containers/{id}/logs", get(logs::<N>))
        .route("/v1/agent/events", get(events::<N>))
        .route("/v1/agent/forward/{ip}/{port}", get(forward::<N>))
        .with_state(agent)
}

fn failure(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(AgentError {
            message: message.into(),
        }),
    )
        .into_response()
}

/// The answer to a request naming something that is not a container id.
fn refused(id: &str) -> Option<Response> {
    (!valid_container_id(id)).then(|| {
        failure(
            StatusCode::BAD_REQUEST,
            format!("{id:?} is not a container id"),
        )
    })
}

fn line(line: &PrepareLine) -> Result<Bytes, Infallible> {
    let mut text = serde_json::to_vec(line).unwrap_or_default();
    text.push(b'\n');
    Ok(Bytes::from(text))
}

/// Streams the prepare's progress as JSON lines, with a line every [`ALIVE_EVERY`] so the
/// control plane can tell a long pull from a worker that went away.
async fn prepare<N: Node>(
    State(agent): State<Arc<Agent<N>>>,
    Json(req): Json<PrepareRequest>,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<PrepareLine>();
    let progress: crate::node::ProgressFn = {
        let tx = tx.clone();
        Arc::new(move |text| {
            let _ = tx.send(PrepareLine::Progress(text));
        })
    };
    tokio::spawn(async move {
        let preparing = agent.node.prepare_image(&req.image, progress);
        tokio::pin!(preparing);
        let mut alive = tokio::time::interval(ALIVE_EVERY);
        alive.tick().await;
        let last = loop {
            tokio::select! {
                done = &mut preparing => break match done {
                    Ok(image) => PrepareLine::Prepared(image),
                    Err(e) => PrepareLine::Failed(e.to_string()),
                },
                _ = alive.tick() => {
                    let _ = tx.send(PrepareLine::Alive);
                }
            }
        };
        let _ = tx.send(last);
    });
    let lines = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|l| (line(&l), rx))
    });
    Body::from_stream(lines).into_response()
}

async fn start<N: Node>(
    State(agent): State<Arc<Agent<N>>>,
    Json(req): Json<StartContainer>,
) -> Response {
    if let Some(refused) = refused(&req.container_id) {
        return refused;
    }
    match agent.node.start(req).await {
        Ok(started) => Json(started).into_response(),
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn running<N: Node>(State(agent): State<Arc<Agent<N>>>) -> Response {
    match agent.node.running_containers().await {
        Ok(ids) => Json(ids).into_response(),
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn stop<N: Node>(
    State(agent): State<Arc<Agent<N>>>,
    Path(id): Path<String>,
    Json(req): Json<StopRequest>,
) -> Response {
    if let Some(refused) = refused(&id) {
        return refused;
    }
    let signal = match berth_api::parse_stop_signal(&req.signal) {
        Ok(signal) => signal,
        Err(e) => return failure(StatusCode::BAD_REQUEST, e),
    };
    let grace = Duration::from_millis(req.grace_ms.min(3_600_000));
    Json(agent.node.stop(&id, signal, grace).await).into_response()
}

async fn teardown<N: Node>(State(agent): State<Arc<Agent<N>>>, Path(id): Path<String>) -> Response {
    if let Some(refused) = refused(&id) {
        return refused;
    }
    match agent.node.teardown(&id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn state<N: Node>(State(agent): State<Arc<Agent<N>>>, Path(id): Path<String>) -> Response {
    if let Some(refused) = refused(&id) {
        return refused;
    }
    Json(agent.node.state(&id).await).into_response()
}

async fn logs<N: Node>(
    State(agent): State<Arc<Agent<N>>>,
    Path(id): Path<String>,
    Query(query): Query<LogsQuery>,
) -> Response {
    if let Some(refused) = refused(&id) {
        return refused;
    }
    match agent.node.logs(&id, query.follow).await {
        Ok(log) => {
            Body::from_stream(log.map(|chunk| chunk.map_err(std::io::Error::other))).into_response()
        }
        Err(e) => failure(StatusCode::NOT_FOUND, e.to_string()),
    }
}

async fn events<N: Node>(
    State(agent): State<Arc<Agent<N>>>,
    Query(query): Query<EventsQuery>,
) -> Response {
    Json(
        agent
            .events
            .after(query.epoch.as_deref(), query.after, POLL_WAIT)
            .await,
    )
    .into_response()
}

/// Upgrades the request to a byte tunnel to `ip:port`, once the pod's port has accepted.
async fn forward<N: Node>(
    State(agent): State<Arc<Agent<N>>>,
    Path((ip, port)): Path<(IpAddr, u16)>,
    mut req: Request,
) -> Response {
    if !agent.pod_subnets.iter().any(|net| net.contains(&ip)) {
        return failure(
            StatusCode::FORBIDDEN,
            format!("{ip} is not a pod address of this worker"),
        );
    }
    let wants_tunnel = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(TUNNEL_PROTOCOL));
    if !wants_tunnel {
        return failure(
            StatusCode::BAD_REQUEST,
            format!("a tunnel needs Upgrade: {TUNNEL_PROTOCOL}"),
        );
    }
    let target = SocketAddr::new(ip, port);
    let pod =
        match tokio::time::timeout(POD_CONNECT_TIMEOUT, tokio::net::TcpStream::connect(target))
            .await
        {
            Ok(Ok(pod)) => pod,
            Ok(Err(e)) => return failure(StatusCode::BAD_GATEWAY, e.to_string()),
            Err(_) => return failure(StatusCode::GATEWAY_TIMEOUT, "connection timed out"),
        };
    let _ = pod.set_nodelay(true);
    let upgrading = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrading.await else {
            return;
        };
        let mut upgraded = TokioIo::new(upgraded);
        let mut pod = pod;
        let _ = tokio::io::copy_bidirectional(&mut upgraded, &mut pod).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, TUNNEL_PROTOCOL)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
