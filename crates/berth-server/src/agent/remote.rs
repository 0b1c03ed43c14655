//! A worker's node, as the control plane reaches it through its agent port.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use berth_api::{CodeUploaded, ImageSource, ImageSummary, PruneResult, TtySize, Volume};
use berth_cluster::error_chain;
use berth_runtime::RuntimeKind;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::tunnel::AgentTunnel;
use super::{
    AgentError, EventBatch, PrepareLine, PrepareRequest, StopRequest, POLL_WAIT, SILENCE_LIMIT,
};
use crate::node::{
    BuildImage, BuiltImage, ExecCommand, ExecStream, FileDownload, LogStream, Node, NodeError,
    NodeEvent, PreparedImage, ProcessState, ProgressFn, StartContainer, Started, StopPath, Stopped,
    TtySession, UploadBody,
};

/// A call that is not a stop, a prepare or a stream and takes longer has failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// What a stop may take beyond its grace.
const STOP_SLACK: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Between polls for ends when the worker cannot be reached.
const POLL_RETRY: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct RemoteNode {
    inner: Arc<Remote>,
}

struct Remote {
    node_id: String,
    agent: SocketAddr,
    base: String,
    http: reqwest::Client,
    tunnel: Arc<AgentTunnel>,
    runtimes: Vec<RuntimeKind>,
}

impl RemoteNode {
    /// The worker `node_id` whose agent port is `agent`, reached with `tls` (the control
    /// plane's certificate); it offers `runtimes`.
    pub fn new(
        node_id: &str,
        agent: SocketAddr,
        tls: Arc<rustls::ClientConfig>,
        runtimes: Vec<RuntimeKind>,
    ) -> Result<Self, NodeError> {
        // The worker's certificate names its node id, not an address: reach it at `agent`
        // under that name, which the handshake then checks.
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .resolve(node_id, agent)
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| NodeError::Remote {
                node: node_id.to_string(),
                message: e.to_string(),
            })?;
        Ok(RemoteNode {
            inner: Arc::new(Remote {
                node_id: node_id.to_string(),
                agent,
                base: format!("https://{node_id}:{}", agent.port()),
                http,
                tunnel: Arc::new(AgentTunnel::new(node_id.to_string(), agent, tls)),
                runtimes,
            }),
        })
    }

    /// Where its agent port is.
    pub fn agent(&self) -> SocketAddr {
        self.inner.agent
    }

    fn error(&self, message: impl std::fmt::Display) -> NodeError {
        NodeError::Remote {
            node: self.inner.node_id.clone(),
            message: message.to_string(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.inner.base)
    }

    /// Sends `req` and reads a JSON answer, or the worker's error.
    async fn call<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, NodeError> {
        let response = self.send(req).await?;
        response
            .json()
            .await
            .map_err(|e| self.error(format!("its answer: {}", error_chain(&e))))
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, NodeError> {
        let response = req
            .send()
            .await
            .map_err(|e| self.error(format!("unreachable: {}", error_chain(&e))))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let message = match response.json::<AgentError>().await {
            Ok(e) => e.message,
            Err(_) => status.to_string(),
        };
        Err(self.error(message))
    }

    /// Polls the worker's ends into `sink` until the task is aborted or `sink` closes.
    pub fn spawn_event_poll(
        &self,
        sink: tokio::sync::mpsc::UnboundedSender<NodeEvent>,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut epoch: Option<String> = None;
            let mut after = 0u64;
            let mut reachable = true;
            loop {
                let mut req = this
                    .inner
                    .http
                    .get(this.url("/v1/agent/events"))
                    .timeout(POLL_WAIT + CONNECT_TIMEOUT * 2)
                    .query(&[("after", after.to_string())]);
                if let Some(epoch) = &epoch {
                    req = req.query(&[("epoch", epoch)]);
                }
                match this.call::<EventBatch>(req).await {
                    Ok(batch) => {
                        if !reachable {
                            tracing::info!(node = %this.inner.node_id, "its agent answers again");
                        }
                        reachable = true;
                        for event in batch.events {
                            if sink.send(event).is_err() {
                                return;
                            }
                        }
                        epoch = Some(batch.epoch);
                        after = batch.last;
                    }
                    Err(e) => {
                        if reachable {
                            tracing::warn!("reading ends: {e}");
                        }
                        reachable = false;
                        tokio::time::sleep(POLL_RETRY).await;
                    }
                }
            }
        })
    }
}

impl Node for RemoteNode {
    fn member(&self, _node_id: &str) -> Option<Self> {
        Some(self.clone())
    }

    fn tunnel(&self) -> Option<Arc<dyn berth_proxy::Tunnel>> {
        Some(self.inner.tunnel.clone())
    }

    async fn prepare_image(
        &self,
        image: &ImageSource,
        progress: ProgressFn,
    ) -> Result<PreparedImage, NodeError> {
        let req = self
            .inner
            .http
            .post(self.url("/v1/agent/images"))
            .json(&PrepareRequest {
                image: image.clone(),
            });
        let mut body = self.send(req).await?.bytes_stream();
        let mut pending = Vec::new();
        loop {
            let chunk = match tokio::time::timeout(SILENCE_LIMIT, body.next()).await {
                Ok(Some(Ok(chunk))) => chunk,
                Ok(Some(Err(e))) => {
                    return Err(self.error(format!("unreachable: {}", error_chain(&e))))
                }
                Ok(None) => return Err(self.error("it stopped answering the prepare")),
                Err(_) => {
                    return Err(self.error(format!(
                        "no word of the prepare for {} s",
                        SILENCE_LIMIT.as_secs()
                    )))
                }
            };
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                match serde_json::from_slice::<PrepareLine>(&line) {
                    Ok(PrepareLine::Progress(text)) => progress(text),
                    Ok(PrepareLine::Alive) => {}
                    Ok(PrepareLine::Prepared(image)) => return Ok(image),
                    Ok(PrepareLine::Failed(message)) => return Err(self.error(message)),
                    Err(e) => return Err(self.error(format!("its answer: {e}"))),
                }
            }
        }
    }

    async fn start(&self, req: StartContainer) -> Result<Started, NodeError> {
        let call = self
            .inner
            .http
            .post(self.url("/v1/agent/containers"))
            .timeout(CALL_TIMEOUT)
            .json(&req);
        self.call(call).await
    }

    async fn stop(&self, id: &str, signal: berth_runtime::Signal, grace: Duration) -> Stopped {
        let call = self
            .inner
            .http
            .post(self.url(&format!("/v1/agent/containers/{id}/stop")))
            .timeout(grace + STOP_SLACK)
            .json(&StopRequest {
                signal: signal.as_str().to_string(),
                grace_ms: u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
            });
        match self.call(call).await {
            Ok(stopped) => stopped,
            // Unknown, not ended: the teardown that follows reports the worker's trouble.
            Err(e) => {
                tracing::warn!(container = %id, "stop: {e}");
                Stopped {
                    state: ProcessState::Lost,
                    path: StopPath::Ended,
                }
            }
        }
    }

    async fn teardown(&self, id: &str) -> Result<(), NodeError> {
        let call = self
            .inner
            .http
            .delete(self.url(&format!("/v1/agent/containers/{id}")))
            .timeout(CALL_TIMEOUT);
        self.send(call).await.map(drop)
    }

    async fn running_containers(&self) -> Result<Vec<String>, NodeError> {
        let call = self
            .inner
            .http
            .get(self.url("/v1/agent/containers"))
            .timeout(CALL_TIMEOUT);
        self.call(call).await
    }

    async fn state(&self, id: &str) -> ProcessState {
        let call = self
            .inner
            .http
            .get(self.url(&format!("/v1/agent/containers/{id}")))
            .timeout(CALL_TIMEOUT);
        match self.call(call).await {
            Ok(state) => state,
            // A worker out of reach has not lost its pods: say they run, and leave it to
            // its heartbeats to tell whether it is gone.
            Err(e) => {
                tracing::warn!(container = %id, "state: {e}");
                ProcessState::Running
            }
        }
    }

    fn events(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<NodeEvent>> {
        None
    }

    async fn logs(&self, id: &str, follow: bool) -> Result<LogStream, NodeError> {
        let call = self
            .inner
            .http
            .get(self.url(&format!("/v1/agent/containers/{id}/logs")))
            .query(&[("follow", follow)]);
        let node = self.inner.node_id.clone();
        let body = self.send(call).await?.bytes_stream();
        Ok(body
            .map(move |chunk| {
                chunk.map_err(|e| NodeError::Remote {
                    node: node.clone(),
                    message: error_chain(&e),
                })
            })
            .boxed())
    }

    async fn build(
        &self,
        _req: BuildImage,
        _log: ProgressFn,
        _cancelled: Arc<AtomicBool>,
    ) -> Result<BuiltImage, NodeError> {
        Err(NodeError::NotOnWorkers {
            what: "building images",
        })
    }

    async fn images(&self) -> Vec<ImageSummary> {
        Vec::new()
    }

    async fn prune(&self, _keep: HashSet<String>) -> PruneResult {
        PruneResult {
            removed_images: Vec::new(),
            removed_layers: 0,
            freed_bytes: 0,
        }
    }

    async fn put_code(&self, _digest: String, _archive: Bytes) -> Result<CodeUploaded, NodeError> {
        Err(NodeError::NotOnWorkers {
            what: "uploaded code",
        })
    }

    fn has_code(&self, _digest: &str) -> bool {
        false
    }

    fn runtimes(&self) -> Vec<RuntimeKind> {
        self.inner.runtimes.clone()
    }

    async fn exec(&self, _id: &str, _exec: ExecCommand) -> Result<ExecStream, NodeError> {
        Err(NodeError::NotOnWorkers { what: "exec" })
    }

    async fn exec_tty(
        &self,
        _id: &str,
        _exec: ExecCommand,
        _size: TtySize,
    ) -> Result<TtySession, NodeError> {
        Err(NodeError::NotOnWorkers { what: "a terminal" })
    }

    async fn read_file(
        &self,
        _id: &str,
        _path: String,
        _max: u64,
    ) -> Result<FileDownload, NodeError> {
        Err(NodeError::NotOnWorkers {
            what: "file access",
        })
    }

    async fn write_file(
        &self,
        _id: &str,
        _path: String,
        _mode: u32,
        _body: UploadBody,
        _max: u64,
    ) -> Result<u64, NodeError> {
        Err(NodeError::NotOnWorkers {
            what: "file access",
        })
    }

    async fn list_files(
        &self,
        _id: &str,
        _path: String,
    ) -> Result<berth_api::FileListing, NodeError> {
        Err(NodeError::NotOnWorkers {
            what: "file access",
        })
    }

    async fn make_dir(&self, _id: &str, _path: String, _mode: u32) -> Result<bool, NodeError> {
        Err(NodeError::NotOnWorkers {
            what: "file access",
        })
    }

    async fn volumes(&self) -> Result<Vec<Volume>, NodeError> {
        Ok(Vec::new())
    }

    async fn delete_volume(&self, _name: &str) -> Result<bool, NodeError> {
        Ok(false)
    }
}
