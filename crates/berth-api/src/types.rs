//! Requests and answers of the container calls: create, list, stop, health, and the states a
//! container moves through.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// `POST /v1/containers`: launch a pod from an image.
///
/// `cpu` and `memory` stay raw JSON here so the server can name the exact problem with a
/// value (`"cpu: \"lots\" is not a number of cores ..."`) instead of a generic decode error.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateContainerRequest {
    /// A registry reference (Docker style: `busybox`, `jupyter/base-notebook:latest`,
    /// `127.0.0.1:5000/app@sha256:...`) or an image spec berth builds.
    pub image: crate::ImageSource,
    /// Ports to expose through the ingress; empty means the image's EXPOSE ports.
    #[serde(default)]
    pub ports: Vec<u32>,
    /// Cores as a number (0.1-64) or millicores as a string ("1500m").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub cpu: Option<Value>,
    /// MiB as an integer, or a string like "512Mi", "1Gi", "1G".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub memory: Option<Value>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Replaces the image's ENTRYPOINT and CMD; absent means the image's own command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Seconds without connections before the pod stops; -1 never, 0 as soon as idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_warm_seconds: Option<i64>,
    /// Named directories on the node that outlive pods, created on first use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeMount>,
    /// Names of stored secrets, each passed as an environment variable of the same name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// An uploaded code archive (`sha256:<hex>`), mounted read-only at `/mnt/code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The entrypoint's working directory; the image's when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// A GPU type; refused on a node without GPUs rather than ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
    /// Require an access token on the pod's URL (not supported yet: refused, never ignored).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub authorized: bool,
    /// `runc` (native namespaces, fastest) or `gvisor` (a user-space kernel between the code
    /// and the host, for untrusted code); the server's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// Cut all egress, DNS included: the pod only answers through its URL.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub block_network: bool,
    /// Allow egress only to these CIDRs (exclusive with `block_network`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_list: Vec<String>,
    /// Mount the image's root filesystem read-only; `/tmp` is then a fresh in-memory tmpfs
    /// (counted against the pod's memory), and volumes and the code directory are as usual.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only_rootfs: bool,
    /// Run a runc pod without a user namespace, its root the host's root (by default
    /// container ids map to an unprivileged host range of their own). gVisor pods are
    /// unaffected.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged_user: bool,
    /// Cap what the pod may write to its root filesystem: MiB as an integer, or a string
    /// like "512Mi", "10Gi" (64 MiB to 16 TiB); no cap when absent. A pod that fills it gets
    /// "no space left on device", and its end says the disk was full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub disk: Option<Value>,
    /// Run a small init (tini) as PID 1 that forwards signals to the entrypoint's process
    /// group and reaps orphaned processes; on unless `false`. An image whose entrypoint is
    /// an init already (tini, dumb-init, catatonit, s6, ...) runs without a second one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    /// The signal a stop sends first (`SIGINT`, `INT`, `2`); the image's STOPSIGNAL when
    /// absent, else SIGTERM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Seconds between the stop signal and SIGKILL (0-3600); the server's `--stop-timeout`
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_seconds: Option<u64>,
}

/// Where the synced working directory appears in a pod.
pub const CODE_MOUNT_PATH: &str = "/mnt/code";

/// `Volume(name="data", mount_path="/data")`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
}

/// Where a container is in its life. Terminal states: `stopped`, `exited`, `oom_killed`,
/// `failed`, `lost`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContainerStatus {
    Pending,
    Pulling,
    Building,
    Starting,
    Running,
    Stopping,
    Stopped,
    Exited,
    OomKilled,
    Failed,
    /// Its worker stopped heartbeating: the pod is given up on, and stopped there if the
    /// worker comes back.
    Lost,
}

impl ContainerStatus {
    pub const ALL: [ContainerStatus; 11] = [
        ContainerStatus::Pending,
        ContainerStatus::Pulling,
        ContainerStatus::Building,
        ContainerStatus::Starting,
        ContainerStatus::Running,
        ContainerStatus::Stopping,
        ContainerStatus::Stopped,
        ContainerStatus::Exited,
        ContainerStatus::OomKilled,
        ContainerStatus::Failed,
        ContainerStatus::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ContainerStatus::Pending => "PENDING",
            ContainerStatus::Pulling => "PULLING",
            ContainerStatus::Building => "BUILDING",
            ContainerStatus::Starting => "STARTING",
            ContainerStatus::Running => "RUNNING",
            ContainerStatus::Stopping => "STOPPING",
            ContainerStatus::Stopped => "STOPPED",
            ContainerStatus::Exited => "EXITED",
            ContainerStatus::OomKilled => "OOM_KILLED",
            ContainerStatus::Failed => "FAILED",
            ContainerStatus::Lost => "LOST",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// On its way to running: not started yet, and not stopped either.
    pub fn is_starting(self) -> bool {
        matches!(
            self,
            ContainerStatus::Pending
                | ContainerStatus::Pulling
                | ContainerStatus::Building
                | ContainerStatus::Starting
        )
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ContainerStatus::Stopped
                | ContainerStatus::Exited
                | ContainerStatus::OomKilled
                | ContainerStatus::Failed
                | ContainerStatus::Lost
        )
    }
}

impl std::fmt::Display for ContainerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A container as the API reports it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Container {
    /// `pod-<stub-id>-<8 hex>`.
    pub id: String,
    pub stub_id: String,
    pub deployment_id: Option<String>,
    pub status: ContainerStatus,
    /// The image reference as requested, or `berth-build/<key>` for a built image.
    pub image: String,
    pub ports: Vec<u16>,
    /// One URL per exposed port, in port order.
    pub urls: Vec<String>,
    /// Exit code of the entrypoint, once it exited.
    pub exit_code: Option<i32>,
    /// Why the container failed or stopped, in words.
    pub reason: Option<String>,
    /// The latest progress line of pulling or starting.
    pub progress: Option<String>,
    pub cpu_millis: u64,
    pub memory_mib: u64,
    pub keep_warm_seconds: i64,
    /// Unix seconds.
    pub scheduled_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Its URLs need a token.
    #[serde(default)]
    pub authorized: bool,
    /// The OCI runtime it runs under: `runc` or `gvisor`.
    #[serde(default)]
    pub runtime: String,
    /// All egress is cut.
    #[serde(default)]
    pub block_network: bool,
    /// Egress is allowed only to these CIDRs (empty: no allow list).
    #[serde(default)]
    pub allow_list: Vec<String>,
    /// The root filesystem is read-only.
    #[serde(default)]
    pub read_only_rootfs: bool,
    /// It runs without a user namespace (asked for with `privileged_user`).
    #[serde(default)]
    pub privileged_user: bool,
    /// The cap on what it may write, in MiB; none when absent.
    #[serde(default)]
    pub disk_mib: Option<u64>,
    /// An init runs as PID 1, the entrypoint as its child.
    #[serde(default)]
    pub init: bool,
    /// The signal a stop sends first, like `SIGTERM`; absent while the image that decides
    /// it is not there yet.
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// Seconds a stop waits after the stop signal before SIGKILL.
    #[serde(default)]
    pub stop_grace_seconds: u64,
    /// The node it is placed on (`GET /v1/nodes`).
    #[serde(default)]
    pub node: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ContainerList {
    pub containers: Vec<Container>,
}

/// `POST /v1/containers/{id}/stop`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StopRequest {
    /// Seconds between the stop signal and SIGKILL; the pod's own grace when absent.
    #[serde(default)]
    pub grace_seconds: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
}
