//! The node boundary: everything that happens on the machine that runs a pod (images,
//! network, root filesystem, runtime, shim) sits behind the [`Node`] trait, the one door the
//! control plane uses. Requests and answers are owned, serde-ready values, logs come as a
//! stream and exits come as pushed events, so the trait can become a network protocol when
//! workers scale out: nothing in it assumes the node shares a disk with the server.

mod build;
mod code;
mod dns;
mod dockerfile;
mod exec;
mod files;
mod id_ranges;
mod local;
mod logs;
mod retention;
mod runtimes;
mod sandboxes;
mod tty;
mod volumes;
mod warm;
mod watch;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use berth_api::{CodeUploaded, ImageSource, ImageSpec, ImageSummary, PruneResult, Volume};
use berth_runtime::ExitRecord;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};

pub use berth_api::TtySize;
pub use code::CodeError;
pub use exec::{ExecCommand, ExecStream};
pub use files::{FileDownload, UploadBody};
pub use local::{LocalNode, LocalNodeConfig};
pub use tty::{TtyInput, TtySession};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    Image(#[from] berth_image::ImageError),
    #[error("{0}")]
    Net(#[from] berth_net::NetError),
    #[error("{0}")]
    Runtime(#[from] berth_runtime::RuntimeError),
    #[error("{0}")]
    Build(#[from] berth_image::build::BuildError),
    #[error("{0}")]
    Conda(#[from] berth_conda::CondaError),
    #[error("{0}")]
    Code(#[from] CodeError),
    #[error("{0}")]
    Dockerfile(#[from] dockerfile::DockerfileError),
    #[error("the code archive {0} is not on this node; upload it first")]
    CodeMissing(String),
    #[error("{}", .0.error.message)]
    Plan(berth_api::ApiError),
    #[error("the image {image} has no command (no ENTRYPOINT or CMD); pass an entrypoint")]
    NoCommand { image: String },
    #[error("the {0} runtime is not installed on this node")]
    RuntimeMissing(&'static str),
    #[error("the image {0} is not on this node; prepare it first")]
    ImageNotPrepared(String),
    #[error("{action} failed: {error}; cleaning up also failed: {cleanup}")]
    WithCleanup {
        action: String,
        error: Box<NodeError>,
        cleanup: Box<NodeError>,
    },
    #[error("cleaning up {what}: {source}")]
    Cleanup {
        what: String,
        #[source]
        source: Box<NodeError>,
    },
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} stopped before it finished: {message}")]
    Task { what: &'static str, message: String },
    #[error("{0}")]
    Files(#[from] berth_runtime::PodFilesError),
    #[error("the file is larger than the {} MiB a transfer may carry", .max / (1024 * 1024))]
    FileTooLarge { max: u64 },
    #[error("receiving the upload: {0}")]
    Upload(String),
    /// What a worker answered, or why it could not be asked.
    #[error("on {node}: {message}")]
    Remote { node: String, message: String },
    #[error("{what} is not offered for pods on workers yet; it works for pods on the control plane's machine")]
    NotOnWorkers { what: &'static str },
    #[error("{0} is not a node this control plane reaches (it has not registered an agent port, or it was deleted)")]
    UnknownNode(String),
}

impl NodeError {
    fn io(path: impl Into<std::path::PathBuf>) -> impl FnOnce(std::io::Error) -> NodeError {
        let path = path.into();
        move |source| NodeError::Io { path, source }
    }

    /// A blocking task that panicked or was cancelled.
    fn task(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> NodeError {
        move |e| NodeError::Task {
            what,
            message: e.to_string(),
        }
    }
}

/// A line of progress (pull, build) for the one who asked.
pub type ProgressFn = Arc<dyn Fn(String) + Send + Sync>;

/// A container's log, as it is written: lines of `<RFC 3339 time> <stdout|stderr> <text>`.
pub type LogStream = BoxStream<'static, Result<Bytes, NodeError>>;

/// An image the node holds ready to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedImage {
    /// The reference it was pulled as, or the built image's name.
    pub reference: String,
}

/// Start a container from a prepared image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartContainer {
    pub container_id: String,
    pub stub_id: String,
    pub image: PreparedImage,
    /// Replaces the image's ENTRYPOINT and CMD when set.
    pub entrypoint: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
    /// Ports to serve; empty for the image's EXPOSE ports.
    pub ports: Vec<u16>,
    pub cpu_millis: u64,
    pub memory_mib: u64,
    pub keep_warm_seconds: i64,
    pub mounts: Vec<PodMount>,
    /// The entrypoint's working directory; the image's when `None`.
    pub workdir: Option<String>,
    /// `runc` or `gvisor`; the node's default when `None`.
    pub runtime: Option<berth_runtime::RuntimeKind>,
    pub egress: berth_net::Egress,
    /// Mount the root filesystem read-only, with a tmpfs at `/tmp`.
    #[serde(default)]
    pub read_only_rootfs: bool,
    /// No user namespace: the pod's root is the host's root.
    #[serde(default)]
    pub privileged_user: bool,
    /// Cap on the writable layer, in MiB.
    #[serde(default)]
    pub disk_mib: Option<u64>,
    /// Run an init as PID 1 unless the image's entrypoint is one.
    #[serde(default)]
    pub init: bool,
    /// The stop signal the pod asked for (a canonical name); the image's when `None`.
    #[serde(default)]
    pub stop_signal: Option<String>,
}

/// A directory the node mounts into a pod, named by what it is rather than where it lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodMount {
    pub source: MountSource,
    /// An absolute path in the pod.
    pub target: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountSource {
    /// An uploaded code archive (`sha256:<hex>`), read-only.
    Code(String),
    /// A named volume, read-write, created on first use.
    Volume(String),
}

/// A started container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    /// Ports served through the ingress: the request's, or the image's EXPOSE ports.
    pub ports: Vec<u16>,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    /// An init runs as PID 1.
    pub init: bool,
    /// The signal a stop sends first: the pod's, the image's STOPSIGNAL, or SIGTERM.
    pub stop_signal: String,
    /// How long each part of the start took on the node ("network", "rootfs", "runtime").
    pub phases: Vec<(String, Duration)>,
}

/// How a stop went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stopped {
    pub state: ProcessState,
    pub path: StopPath,
}

/// What a stop had to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopPath {
    /// The process had ended already.
    Ended,
    /// It ended on the stop signal (a canonical name).
    Signal(String),
    /// It outlived the stop signal's grace and got SIGKILL.
    Killed { signal: String, grace_seconds: u64 },
}

impl std::fmt::Display for StopPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopPath::Ended => f.write_str("it had ended already"),
            StopPath::Signal(signal) => write!(f, "{signal}"),
            StopPath::Killed {
                signal,
                grace_seconds,
            } => write!(f, "{signal}, then SIGKILL after {grace_seconds} s grace"),
        }
    }
}

/// Build an image spec, and optionally push the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildImage {
    pub spec: ImageSpec,
    pub push: Option<String>,
}

/// The outcome of a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltImage {
    pub reference: String,
    pub cached: bool,
}

/// What the node knows of a container's main process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProcessState {
    Running,
    Exited(ExitRecord),
    /// Neither running nor recorded: its shim is gone.
    Lost,
}

/// A change in a container's process, pushed by the node as it happens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEvent {
    pub container_id: String,
    /// Never [`ProcessState::Running`]: events tell of ends.
    pub state: ProcessState,
}

pub trait Node: Clone + Send + Sync + 'static {
    /// The node with id `node_id` among those this one reaches, to act on the containers
    /// placed there; a single machine reaches itself under any id.
    fn member(&self, node_id: &str) -> Option<Self>;

    /// How the ingress reaches this node's pods when they are on another machine; `None`
    /// when their addresses route from here.
    fn tunnel(&self) -> Option<Arc<dyn berth_proxy::Tunnel>> {
        None
    }

    /// Makes the image ready to run (pull, or build), sending progress lines.
    fn prepare_image(
        &self,
        image: &ImageSource,
        progress: ProgressFn,
    ) -> impl Future<Output = Result<PreparedImage, NodeError>> + Send;

    /// Wires and starts a container; on error nothing of it is left. Its end arrives later
    /// as a [`NodeEvent`].
    fn start(&self, req: StartContainer)
        -> impl Future<Output = Result<Started, NodeError>> + Send;

    /// `signal` to the pod's PID 1, `grace`, then SIGKILL to every process; returns once
    /// the process is gone (or lost).
    fn stop(
        &self,
        id: &str,
        signal: berth_runtime::Signal,
        grace: Duration,
    ) -> impl Future<Output = Stopped> + Send;

    /// Removes everything the container held: runtime state, mounts, network. Idempotent.
    fn teardown(&self, id: &str) -> impl Future<Output = Result<(), NodeError>> + Send;

    /// The containers whose process runs on this node, so a control plane can stop those
    /// it no longer wants (a worker back from a partition).
    fn running_containers(&self) -> impl Future<Output = Result<Vec<String>, NodeError>> + Send;

    /// The container's process now; for adopting containers after a restart.
    fn state(&self, id: &str) -> impl Future<Output = ProcessState> + Send;

    /// The stream of container ends. There is one: the first caller gets it.
    fn events(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<NodeEvent>>;

    /// The container's log so far, or with `follow` until the container has ended.
    fn logs(
        &self,
        id: &str,
        follow: bool,
    ) -> impl Future<Output = Result<LogStream, NodeError>> + Send;

    /// Builds an image spec (or finds it cached), streaming log lines; stops when
    /// `cancelled` is set.
    fn build(
        &self,
        req: BuildImage,
        log: ProgressFn,
        cancelled: Arc<AtomicBool>,
    ) -> impl Future<Output = Result<BuiltImage, NodeError>> + Send;

    fn images(&self) -> impl Future<Output = Vec<ImageSummary>> + Send;

    /// Removes pulled images whose reference is not in `keep`, and unreferenced layers.
    fn prune(&self, keep: HashSet<String>) -> impl Future<Output = PruneResult> + Send;

    /// Checks an uploaded working directory against its digest and unpacks it.
    fn put_code(
        &self,
        digest: String,
        archive: Bytes,
    ) -> impl Future<Output = Result<CodeUploaded, NodeError>> + Send;

    fn has_code(&self, digest: &str) -> bool;

    /// The runtimes this node runs pods with, its default first.
    fn runtimes(&self) -> Vec<berth_runtime::RuntimeKind>;

    /// Runs a command in the running container `id`; its output and end come as events.
    fn exec(
        &self,
        id: &str,
        exec: ExecCommand,
    ) -> impl Future<Output = Result<ExecStream, NodeError>> + Send;

    /// Runs a command in the running container `id` on a terminal of `size`, to be typed
    /// into and resized.
    fn exec_tty(
        &self,
        id: &str,
        exec: ExecCommand,
        size: TtySize,
    ) -> impl Future<Output = Result<TtySession, NodeError>> + Send;

    /// Opens the regular file at `path` in the running container `id` to stream it out;
    /// a file over `max` bytes is refused.
    fn read_file(
        &self,
        id: &str,
        path: String,
        max: u64,
    ) -> impl Future<Output = Result<FileDownload, NodeError>> + Send;

    /// Writes `body` to `path` in the running container `id` (owned by the pod's user),
    /// whole or not at all; returns its size.
    fn write_file(
        &self,
        id: &str,
        path: String,
        mode: u32,
        body: UploadBody,
        max: u64,
    ) -> impl Future<Output = Result<u64, NodeError>> + Send;

    /// The entries of the directory at `path` in the running container `id`.
    fn list_files(
        &self,
        id: &str,
        path: String,
    ) -> impl Future<Output = Result<berth_api::FileListing, NodeError>> + Send;

    /// Makes the directory at `path` in the running container `id` (owned by the pod's
    /// user); `false` if one was already there.
    fn make_dir(
        &self,
        id: &str,
        path: String,
        mode: u32,
    ) -> impl Future<Output = Result<bool, NodeError>> + Send;

    fn volumes(&self) -> impl Future<Output = Result<Vec<Volume>, NodeError>> + Send;

    /// Removes a volume and its files; `false` if there was none.
    fn delete_volume(&self, name: &str) -> impl Future<Output = Result<bool, NodeError>> + Send;
}
