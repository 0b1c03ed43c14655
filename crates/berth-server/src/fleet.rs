//! The control plane's nodes as one [`Node`]: its own machine, and the workers that joined
//! and said where their agent listens. [`Node::member`] picks one to act on a container
//! placed there; the fleet itself acts on the control plane's machine, and its ends stream
//! carries every member's.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use berth_api::{CodeUploaded, ImageSource, ImageSummary, PruneResult, TtySize, Volume};
use berth_runtime::RuntimeKind;
use bytes::Bytes;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

use crate::agent::RemoteNode;
use crate::node::{
    BuildImage, BuiltImage, ExecCommand, ExecStream, FileDownload, LogStream, Node, NodeError,
    NodeEvent, PreparedImage, ProcessState, ProgressFn, StartContainer, Started, Stopped,
    TtySession, UploadBody,
};
use crate::store::NodeRow;

pub struct Fleet<L: Node> {
    local: L,
    shared: Arc<Shared>,
    /// The worker this handle acts on; the control plane's machine when `None`.
    target: Option<RemoteNode>,
}

impl<L: Node> Clone for Fleet<L> {
    fn clone(&self) -> Self {
        Fleet {
            local: self.local.clone(),
            shared: self.shared.clone(),
            target: self.target.clone(),
        }
    }
}

struct Shared {
    own_id: String,
    /// The control plane's certificate for agent ports; `None` takes no workers.
    tls: Option<Arc<rustls::ClientConfig>>,
    workers: RwLock<HashMap<String, Worker>>,
    ends: UnboundedSender<NodeEvent>,
    ends_rx: Mutex<Option<UnboundedReceiver<NodeEvent>>>,
}

struct Worker {
    node: RemoteNode,
    polling: tokio::task::JoinHandle<()>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.polling.abort();
    }
}

impl<L: Node> Fleet<L> {
    /// The fleet of `local` (node `own_id`) alone, until [`sync`](Self::sync) finds
    /// workers; `tls` is how it reaches them. Needs a Tokio runtime.
    pub fn new(local: L, own_id: String, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        let (ends, ends_rx) = tokio::sync::mpsc::unbounded_channel();
        if let Some(mut local_ends) = local.events() {
            let ends = ends.clone();
            tokio::spawn(async move {
                while let Some(end) = local_ends.recv().await {
                    if ends.send(end).is_err() {
                        return;
                    }
                }
            });
        }
        Fleet {
            local,
            shared: Arc::new(Shared {
                own_id,
                tls,
                workers: RwLock::default(),
                ends,
                ends_rx: Mutex::new(Some(ends_rx)),
            }),
            target: None,
        }
    }

    /// Makes the workers the fleet reaches those of `nodes` with an agent address: new
    /// ones are added (and their ends polled), deleted ones dropped.
    pub fn sync(&self, nodes: &[NodeRow]) {
        let Some(tls) = &self.shared.tls else { return };
        let mut workers = self.shared.workers.write().expect("lock");
        let wanted: HashMap<&str, SocketAddr> = nodes
            .iter()
            .filter(|n| n.id != self.shared.own_id)
            .filter_map(|n| {
                let addr = n.agent_address.as_deref()?.parse().ok()?;
                Some((n.id.as_str(), addr))
            })
            .collect();
        workers.retain(|id, w| wanted.get(id.as_str()) == Some(&w.node.agent()));
        for node in nodes {
            let Some(addr) = wanted.get(node.id.as_str()) else {
                continue;
            };
            if workers.contains_key(&node.id) {
                continue;
            }
            let runtimes = node
                .runtimes
                .iter()
                .filter_map(|r| r.parse().ok())
                .collect();
            match RemoteNode::new(&node.id, *addr, tls.clone(), runtimes) {
                Ok(remote) => {
                    tracing::info!(node = %node.id, agent = %addr, "reaching the worker's agent");
                    let polling = remote.spawn_event_poll(self.shared.ends.clone());
                    workers.insert(
                        node.id.clone(),
                        Worker {
                            node: remote,
                            polling,
                        },
                    );
                }
                Err(e) => tracing::warn!(node = %node.id, "{e}"),
            }
        }
    }

    /// Keeps the workers in step with the store's nodes, every `every` and whenever
    /// `changed` is woken, until aborted.
    pub fn spawn_sync(
        &self,
        store: crate::store::Store,
        every: Duration,
        changed: Arc<tokio::sync::Notify>,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = changed.notified() => {}
                }
                match store.nodes().await {
                    Ok(nodes) => this.sync(&nodes),
                    Err(e) => tracing::warn!("reading nodes: {e}"),
                }
            }
        })
    }
}

/// Runs `$body` with `$n` bound to the node this handle acts on.
macro_rules! on_target {
    ($self:ident, $n:ident => $body:expr) => {
        match &$self.target {
            Some($n) => $body,
            None => {
                let $n = &$self.local;
                $body
            }
        }
    };
}

impl<L: Node> Node for Fleet<L> {
    fn member(&self, node_id: &str) -> Option<Self> {
        let target = if node_id == self.shared.own_id {
            None
        } else {
            let workers = self.shared.workers.read().expect("lock");
            Some(workers.get(node_id)?.node.clone())
        };
        Some(Fleet {
            local: self.local.clone(),
            shared: self.shared.clone(),
            target,
        })
    }

    fn tunnel(&self) -> Option<Arc<dyn berth_proxy::Tunnel>> {
        on_target!(self, n => n.tunnel())
    }

    async fn prepare_image(
        &self,
        image: &ImageSource,
        progress: ProgressFn,
    ) -> Result<PreparedImage, NodeError> {
        on_target!(self, n => n.prepare_image(image, progress).await)
    }

    async fn start(&self, req: StartContainer) -> Result<Started, NodeError> {
        on_target!(self, n => n.start(req).await)
    }

    async fn stop(&self, id: &str, signal: berth_runtime::Signal, grace: Duration) -> Stopped {
        on_target!(self, n => n.stop(id, signal, grace).await)
    }

    async fn teardown(&self, id: &str) -> Result<(), NodeError> {
        on_target!(self, n => n.teardown(id).await)
    }

    async fn running_containers(&self) -> Result<Vec<String>, NodeError> {
        on_target!(self, n => n.running_containers().await)
    }

    async fn state(&self, id: &str) -> ProcessState {
        on_target!(self, n => n.state(id).await)
    }

    /// Every member's ends, once.
    fn events(&self) -> Option<UnboundedReceiver<NodeEvent>> {
        self.shared.ends_rx.lock().expect("lock").take()
    }

    async fn logs(&self, id: &str, follow: bool) -> Result<LogStream, NodeError> {
        on_target!(self, n => n.logs(id, follow).await)
    }

    async fn build(
        &self,
        req: BuildImage,
        log: ProgressFn,
        cancelled: Arc<AtomicBool>,
    ) -> Result<BuiltImage, NodeError> {
        on_target!(self, n => n.build(req, log, cancelled).await)
    }

    async fn images(&self) -> Vec<ImageSummary> {
        on_target!(self, n => n.images().await)
    }

    async fn prune(&self, keep: HashSet<String>) -> PruneResult {
        on_target!(self, n => n.prune(keep).await)
    }

    async fn put_code(&self, digest: String, archive: Bytes) -> Result<CodeUploaded, NodeError> {
        on_target!(self, n => n.put_code(digest, archive).await)
    }

    fn has_code(&self, digest: &str) -> bool {
        on_target!(self, n => n.has_code(digest))
    }

    fn runtimes(&self) -> Vec<RuntimeKind> {
        on_target!(self, n => n.runtimes())
    }

    async fn exec(&self, id: &str, exec: ExecCommand) -> Result<ExecStream, NodeError> {
        on_target!(self, n => n.exec(id, exec).await)
    }

    async fn exec_tty(
        &self,
        id: &str,
        exec: ExecCommand,
        size: TtySize,
    ) -> Result<TtySession, NodeError> {
        on_target!(self, n => n.exec_tty(id, exec, size).await)
    }

    async fn read_file(&self, id: &str, path: String, max: u64) -> Result<FileDownload, NodeError> {
        on_target!(self, n => n.read_file(id, path, max).await)
    }

    async fn write_file(
        &self,
        id: &str,
        path: String,
        mode: u32,
        body: UploadBody,
        max: u64,
    ) -> Result<u64, NodeError> {
        on_target!(self, n => n.write_file(id, path, mode, body, max).await)
    }

    async fn list_files(
        &self,
        id: &str,
        path: String,
    ) -> Result<berth_api::FileListing, NodeError> {
        on_target!(self, n => n.list_files(id, path).await)
    }

    async fn make_dir(&self, id: &str, path: String, mode: u32) -> Result<bool, NodeError> {
        on_target!(self, n => n.make_dir(id, path, mode).await)
    }

    async fn volumes(&self) -> Result<Vec<Volume>, NodeError> {
        on_target!(self, n => n.volumes().await)
    }

    async fn delete_volume(&self, name: &str) -> Result<bool, NodeError> {
        on_target!(self, n => n.delete_volume(name).await)
    }
}
