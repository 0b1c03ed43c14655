//! The control plane's lifecycle: create, start, stop, exit, idle and recovery, all going
//! through one transition function and one teardown path. It is the HTTP layer's only way to
//! containers: it alone holds the node and the container rows.

mod workers;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api::{ApiError, Container, ContainerStatus, ImageSource, ImageSpec, CODE_MOUNT_PATH};

use crate::spec::missing_context;
use berth_proxy::{Activity, PodHost, Route, RouteTable};
use futures_util::FutureExt;
use rand::Rng;

use crate::node::{
    LogStream, MountSource, Node, NodeError, NodeEvent, PodMount, ProcessState, StartContainer,
    StopPath,
};
use crate::schedule::{Ask, PlaceError};
use crate::secrets::Secrets;
use crate::spec::PodSpec;
use crate::start_metrics::StartMetrics;
use crate::state;
use crate::store::{ContainerRow, Store, StoreError};

/// How often idle deadlines are checked.
const IDLE_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// How often a followed log of a container still starting checks whether it runs.
const START_WAIT_INTERVAL: Duration = Duration::from_millis(200);
/// How long stopping every pod waits beyond the longest grace: for SIGKILL to land, the
/// teardowns, and starts that are between two steps.
const STOP_ALL_SLACK: Duration = Duration::from_secs(20);
/// How long a request for a pod that is still starting waits for it.
const START_WAIT_LIMIT: Duration = Duration::from_secs(30);
/// How long a request that waited for its pod to start then waits for the port to accept;
/// past it the request goes on and the proxy says the pod is not accepting yet.
const ACCEPT_WAIT_LIMIT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("no container {0}")]
    NotFound(String),
    /// The request names something that does not exist (a secret, an upload).
    #[error("{0}")]
    Invalid(ApiError),
    #[error("container {id} is {status}, not RUNNING: {what} needs a running pod")]
    NotRunning {
        id: String,
        status: ContainerStatus,
        what: &'static str,
    },
    #[error("{limit} pod starts are already queued on this server (--max-pending-starts); retry in a moment")]
    Busy { limit: usize },
    /// No node can take the pod now.
    #[error("{0}")]
    Unplaceable(PlaceError),
    #[error("container {id} is {from}; it cannot become {to}")]
    Illegal {
        id: String,
        from: ContainerStatus,
        to: ContainerStatus,
    },
}

#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    pub domain: String,
    /// `https` when the ingress serves TLS, else `http`.
    pub url_scheme: &'static str,
    /// The ingress port, shown in URLs unless it is the scheme's default.
    pub url_port: u16,
    pub stop_grace: Duration,
    /// Creates past this many starts in flight are refused (429) instead of queued.
    pub max_pending_starts: usize,
    /// The node this lifecycle places pods on and watches over.
    pub node_id: String,
}

pub struct Lifecycle<N: Node> {
    store: Store,
    node: N,
    routes: Arc<RouteTable>,
    config: LifecycleConfig,
    /// `None` in tests that use no secrets.
    secrets: Option<Secrets>,
    activities: Mutex<HashMap<String, Arc<Activity>>>,
    progress: Mutex<HashMap<String, String>>,
    /// Containers whose exit or stop is being handled, so it is handled once.
    busy: Mutex<HashSet<String>>,
    /// Serialises read-modify-write of container rows.
    write: tokio::sync::Mutex<()>,
    start_metrics: StartMetrics,
    /// Woken at every status change, for those who wait on one.
    transitions: tokio::sync::Notify,
    /// Starts and stops in flight, which a handover waits for.
    tasks: tokio_util::task::TaskTracker,
    /// One permit per start in flight, from create to RUNNING or the end.
    start_slots: Arc<tokio::sync::Semaphore>,
    /// Held from placing a pod to recording where, so two creates do not both take the
    /// same room.
    placing: tokio::sync::Mutex<()>,
    /// Workers whose pods were marked LOST, until they answer again.
    down_workers: Mutex<HashSet<String>>,
    /// A check of the workers is in flight.
    checking_workers: Arc<std::sync::atomic::AtomicBool>,
}

/// What a container's end adds when forks failed at its pids limit while it ran.
fn pids_note(state: &ProcessState) -> String {
    match state {
        ProcessState::Exited(exit) if exit.pids_limited => {
            "; it hit its pids limit (a fork bomb or runaway processes)".into()
        }
        _ => String::new(),
    }
}

/// "exited with code N", with what a shell's conventions say about N: a missing command,
/// or the signal that a code of 128 + n reports.
fn exit_words(code: i32) -> String {
    let meaning = match code {
        126 => Some("the command could not be run".to_string()),
        127 => Some("command not found".to_string()),
        129..=159 => berth_runtime::Signal::try_from(code - 128)
            .ok()
            .map(|signal| signal.as_str().to_string()),
        _ => None,
    };
    match meaning {
        Some(meaning) => format!("exited with code {code} ({meaning})"),
        None => format!("exited with code {code}"),
    }
}

/// What keeps a pod on the control plane's machine, if anything: what it needs lives
/// there alone for now (uploads, volumes, builds).
fn control_plane_only(spec: &PodSpec) -> Option<&'static str> {
    if spec.code.is_some() {
        Some("a pod with uploaded code")
    } else if !spec.volumes.is_empty() {
        Some("a pod with volumes")
    } else if matches!(spec.image, ImageSource::Spec(_)) {
        Some("a pod with an image berth builds")
    } else {
        None
    }
}

/// Unix seconds now.
pub(crate) fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}

/// Whether a pod with this keep-warm period, last active at `since_ms`, is idle at `now_ms`.
/// Saturating: no period or clock value can overflow into stopping a pod early.
fn idle_deadline_passed(keep_warm_seconds: i64, since_ms: i64, now_ms: i64) -> bool {
    keep_warm_seconds >= 0
        && now_ms.saturating_sub(since_ms) >= keep_warm_seconds.saturating_mul(1000)
}

impl<N: Node> Lifecycle<N> {
    pub fn new(
        store: Store,
        node: N,
        routes: Arc<RouteTable>,
        config: LifecycleConfig,
        secrets: Option<Secrets>,
    ) -> Arc<Self> {
        let start_slots = Arc::new(tokio::sync::Semaphore::new(
            config.max_pending_starts.max(1),
        ));
        Arc::new(Lifecycle {
            start_slots,
            store,
            node,
            routes,
            config,
            secrets,
            activities: Mutex::default(),
            progress: Mutex::default(),
            busy: Mutex::default(),
            write: tokio::sync::Mutex::new(()),
            start_metrics: StartMetrics::default(),
            transitions: tokio::sync::Notify::new(),
            tasks: tokio_util::task::TaskTracker::new(),
            placing: tokio::sync::Mutex::new(()),
            down_workers: Mutex::default(),
            checking_workers: Arc::default(),
        })
    }

    /// Where the time of each start went, for `/metrics`.
    pub fn start_metrics(&self) -> &StartMetrics {
        &self.start_metrics
    }

    /// Records the container as PENDING and starts it in the background.
    pub async fn create(self: &Arc<Self>, spec: PodSpec) -> Result<Container, LifecycleError> {
        self.create_owned(spec, None).await
    }

    /// Checks that what the spec names exists: its runtime, its secrets and its uploaded code.
    pub async fn check_references(&self, spec: &PodSpec) -> Result<(), LifecycleError> {
        if let Some(runtime) = &spec.runtime {
            let ask = Ask {
                cpu_millis: 0,
                memory_mib: 0,
                runtime: Some(runtime.clone()),
                control_plane_only: None,
            };
            if let Err(e @ PlaceError::NoRuntime { .. }) = self.place(&ask).await {
                return Err(LifecycleError::Invalid(ApiError::invalid(
                    "runtime",
                    e.to_string(),
                )));
            }
        }
        if let ImageSource::Spec(ImageSpec {
            context: Some(context),
            ..
        }) = &spec.image
        {
            if !self.node.has_code(context) {
                return Err(LifecycleError::Invalid(missing_context(context)));
            }
        }
        if let Some(code) = &spec.code {
            if !self.node.has_code(code) {
                return Err(LifecycleError::Invalid(ApiError::invalid(
                    "code",
                    format!("{code} was not uploaded; PUT the archive to /v1/code/{code} first"),
                )));
            }
        }
        if !spec.secrets.is_empty() {
            let secrets = self.secrets.as_ref().ok_or_else(|| {
                LifecycleError::Invalid(ApiError::invalid("secrets", "this server keeps none"))
            })?;
            secrets
                .check_exist(&spec.secrets)
                .await
                .map_err(|e| LifecycleError::Invalid(ApiError::invalid("secrets", e)))?;
        }
        Ok(())
    }

    /// [`create`](Self::create) for a container that belongs to a deployment version.
    pub async fn create_owned(
        self: &Arc<Self>,
        spec: PodSpec,
        deployment_id: Option<String>,
    ) -> Result<Container, LifecycleError> {
        self.check_references(&spec).await?;
        let slot =
            self.start_slots
                .clone()
                .try_acquire_owned()
                .map_err(|_| LifecycleError::Busy {
                    limit: self.config.max_pending_starts,
                })?;
        let stub_id = spec.stub_id().map_err(|e| StoreError::Corrupt {
            what: "pod spec",
            detail: e.to_string(),
        })?;
        let id = format!("pod-{stub_id}-{:08x}", rand::rng().random::<u32>());
        let placing = self.placing.lock().await;
        let node_id = self
            .place(&Ask {
                cpu_millis: spec.cpu_millis,
                memory_mib: spec.memory_mib,
                runtime: spec.runtime.clone(),
                control_plane_only: control_plane_only(&spec),
            })
            .await
            .map_err(LifecycleError::Unplaceable)?;
        let node = self.on(&node_id)?;
        let at = now();
        self.store.upsert_stub(&stub_id, &spec, at).await?;
        let row = ContainerRow {
            id: id.clone(),
            stub_id: stub_id.clone(),
            deployment_id,
            status: ContainerStatus::Pending,
            image: spec.image_name(),
            ports: spec.ports.clone(),
            cpu_millis: spec.cpu_millis,
            memory_mib: spec.memory_mib,
            keep_warm_seconds: spec.keep_warm_seconds,
            exit_code: None,
            reason: None,
            ipv4: None,
            ipv6: None,
            scheduled_at: at,
            started_at: None,
            finished_at: None,
            authorized: spec.authorized,
            runtime: spec
                .runtime
                .clone()
                .or_else(|| node.runtimes().first().map(|k| k.as_str().to_string()))
                .unwrap_or_default(),
            block_network: spec.block_network,
            allow_list: spec.allow_list.iter().map(ToString::to_string).collect(),
            read_only_rootfs: spec.read_only_rootfs,
            disk_mib: spec.disk_mib,
            privileged_user: spec.privileged_user,
            init: spec.init,
            stop_signal: spec.stop_signal.clone(),
            stop_grace_seconds: spec.stop_grace_seconds,
            node_id: Some(node_id.clone()),
        };
        self.store.insert_container(&row).await?;
        drop(placing);
        tracing::info!(container = %id, image = %spec.image_name(), node = %node_id, "PENDING");
        let this = self.clone();
        self.tasks.spawn(async move {
            this.start(id, stub_id, spec, node).await;
            drop(slot);
        });
        Ok(self.view(row))
    }

    async fn start(self: Arc<Self>, id: String, stub_id: String, spec: PodSpec, node: N) {
        let began = std::time::Instant::now();
        let (phase, line) = match &spec.image {
            ImageSource::Reference(r) => (ContainerStatus::Pulling, format!("Pulling image {r}")),
            ImageSource::Spec(_) => (ContainerStatus::Building, "Building image".to_string()),
        };
        if self.transition(&id, phase, |_| {}).await.is_err() {
            return self.finish_early_stop(&id).await;
        }
        self.set_progress(&id, line);
        let progress: crate::node::ProgressFn = {
            let this = self.clone();
            let id = id.clone();
            Arc::new(move |line| this.set_progress(&id, line))
        };
        let preparing = std::time::Instant::now();
        let image = match node.prepare_image(&spec.image, progress).await {
            Ok(image) => image,
            Err(e) => return self.fail_start(&id, e.to_string()).await,
        };
        self.start_metrics.observe("image", preparing.elapsed());
        if self
            .transition(&id, ContainerStatus::Starting, |_| {})
            .await
            .is_err()
        {
            return self.finish_early_stop(&id).await;
        }
        self.set_progress(&id, "Creating container".into());
        let image_name = image.reference.clone();
        let egress = spec.egress();
        let mut env = spec.env;
        if let Err(e) = self.reveal_secrets(&spec.secrets, &mut env).await {
            return self.fail_start(&id, e).await;
        }
        let mut mounts: Vec<PodMount> = spec
            .code
            .map(|digest| PodMount {
                source: MountSource::Code(digest),
                target: CODE_MOUNT_PATH.into(),
            })
            .into_iter()
            .collect();
        mounts.extend(spec.volumes.into_iter().map(|v| PodMount {
            source: MountSource::Volume(v.name),
            target: v.mount_path,
        }));
        let req = StartContainer {
            container_id: id.clone(),
            stub_id,
            image,
            entrypoint: spec.entrypoint,
            env,
            ports: spec.ports,
            cpu_millis: spec.cpu_millis,
            memory_mib: spec.memory_mib,
            keep_warm_seconds: spec.keep_warm_seconds,
            mounts,
            runtime: spec.runtime.as_deref().and_then(|r| r.parse().ok()),
            egress,
            workdir: spec.workdir,
            read_only_rootfs: spec.read_only_rootfs,
            privileged_user: spec.privileged_user,
            disk_mib: spec.disk_mib,
            init: spec.init,
            stop_signal: spec.stop_signal,
        };
        let started = match node.start(req).await {
            Ok(started) => started,
            Err(e) => return self.fail_start(&id, e.to_string()).await,
        };
        for (phase, took) in &started.phases {
            self.start_metrics.observe(phase, *took);
        }
        let running = self
            .transition(&id, ContainerStatus::Running, |row| {
                row.image = image_name;
                row.ports = started.ports;
                row.started_at = Some(now());
                row.ipv4 = started.ipv4;
                row.ipv6 = started.ipv6;
                row.init = started.init;
                row.stop_signal = Some(started.stop_signal);
            })
            .await;
        self.clear_progress(&id);
        match running {
            Ok(row) => {
                self.add_route(&row);
                self.start_metrics.observe("total", began.elapsed());
                // An end the node pushed before the row said RUNNING was not ours to take
                // then; take it now.
                let state = node.state(&id).await;
                if state != ProcessState::Running {
                    self.on_process_end(row, state);
                }
            }
            // Stopped while starting: the stop is ours to carry out.
            Err(_) => {
                let this = self.clone();
                self.tasks
                    .spawn(async move { this.stop_and_finish(id, None).await });
            }
        }
    }

    /// Adds each named secret's value to `env`; the values go to the node and nowhere else.
    async fn reveal_secrets(
        &self,
        names: &[String],
        env: &mut std::collections::BTreeMap<String, String>,
    ) -> Result<(), String> {
        if names.is_empty() {
            return Ok(());
        }
        let secrets = self
            .secrets
            .as_ref()
            .ok_or("this server keeps no secrets")?;
        for name in names {
            let value = secrets.reveal(name).await.map_err(|e| e.to_string())?;
            env.insert(name.clone(), value);
        }
        Ok(())
    }

    async fn fail_start(self: &Arc<Self>, id: &str, reason: String) {
        self.clear_progress(id);
        // The node already undid its part of a failed start.
        let stopped_meanwhile = matches!(
            self.store.container(id).await,
            Ok(Some(row)) if row.status == ContainerStatus::Stopping
        );
        let status = if stopped_meanwhile {
            ContainerStatus::Stopped
        } else {
            ContainerStatus::Failed
        };
        tracing::warn!(container = %id, "start failed: {reason}");
        let _ = self
            .transition(id, status, |row| {
                row.reason = Some(reason);
                row.finished_at = Some(now());
            })
            .await;
    }

    async fn finish_early_stop(self: &Arc<Self>, id: &str) {
        self.clear_progress(id);
        if let Ok(node) = self.node_for(id).await {
            let _ = node.teardown(id).await;
        }
        let _ = self
            .transition(id, ContainerStatus::Stopped, |row| {
                row.reason = Some("stopped before it started".into());
                row.finished_at = Some(now());
            })
            .await;
    }

    /// Asks a container to stop. Stopping a container that already ended is a no-op.
    pub async fn stop(
        self: &Arc<Self>,
        id: &str,
        grace: Option<Duration>,
    ) -> Result<Container, LifecycleError> {
        let row = self
            .store
            .container(id)
            .await?
            .ok_or_else(|| LifecycleError::NotFound(id.to_string()))?;
        if row.status.is_terminal() || row.status == ContainerStatus::Stopping {
            return Ok(self.view(row));
        }
        let was = row.status;
        let row = match self
            .transition(id, ContainerStatus::Stopping, |row| {
                row.reason = Some("stopped by request".into());
            })
            .await
        {
            Ok(row) => row,
            // It ended between the read and the write: nothing left to stop.
            Err(LifecycleError::Illegal { .. }) => {
                return self
                    .get(id)
                    .await?
                    .ok_or_else(|| LifecycleError::NotFound(id.to_string()))
            }
            Err(e) => return Err(e),
        };
        // A container still starting is stopped by its start task at its next step.
        if was == ContainerStatus::Running {
            let this = self.clone();
            let id = id.to_string();
            self.tasks
                .spawn(async move { this.stop_and_finish(id, grace).await });
        }
        Ok(self.view(row))
    }

    /// Stop signal, grace, SIGKILL, teardown, STOPPED: the one way a stop completes. The
    /// recorded reason says which signals it took.
    async fn stop_and_finish(self: Arc<Self>, id: String, grace: Option<Duration>) {
        if !self.claim(&id) {
            return;
        }
        self.routes.remove(&id);
        let row = self.store.container(&id).await.ok().flatten();
        let signal = row
            .as_ref()
            .and_then(|r| r.stop_signal.as_deref())
            .and_then(|name| berth_api::parse_stop_signal(name).ok())
            .unwrap_or(berth_api::DEFAULT_STOP_SIGNAL);
        let grace = grace.unwrap_or_else(|| match &row {
            Some(r) => self.grace_of(r),
            None => self.config.stop_grace,
        });
        let stopped = match self.on_placed(row.as_ref()) {
            Ok(node) => node.stop(&id, signal, grace).await,
            Err(e) => {
                tracing::warn!(container = %id, "stop: {e}");
                crate::node::Stopped {
                    state: ProcessState::Lost,
                    path: StopPath::Ended,
                }
            }
        };
        let exit_code = match stopped.state {
            ProcessState::Exited(rec) => Some(rec.exit_code),
            _ => None,
        };
        let why = row
            .and_then(|r| r.reason)
            .unwrap_or_else(|| "stopped by request".into());
        let how = match &stopped.path {
            StopPath::Ended => String::new(),
            path => format!(" ({path})"),
        };
        let reason = format!("{why}{how}{}", pids_note(&stopped.state));
        self.teardown_and_record(&id, ContainerStatus::Stopped, exit_code, Some(reason))
            .await;
        self.release(&id);
    }

    /// The time a stop of `row` waits between its stop signal and SIGKILL: its own, else the
    /// server's.
    fn grace_of(&self, row: &ContainerRow) -> Duration {
        row.stop_grace_seconds
            .map_or(self.config.stop_grace, Duration::from_secs)
    }

    /// Stops every container that is not stopped yet, all at once, and waits for them:
    /// for a server that takes its pods down with it.
    pub async fn stop_all(self: &Arc<Self>) -> Result<usize, LifecycleError> {
        let rows = self.own_active().await?;
        let longest_grace = rows
            .iter()
            .map(|r| self.grace_of(r))
            .max()
            .unwrap_or_default();
        let stops = rows.iter().map(|row| self.stop(&row.id, None));
        let asked = futures_util::future::join_all(stops).await.len();
        // Each stop runs in a task of its own; wait until all are recorded.
        let limit = longest_grace + STOP_ALL_SLACK;
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if self.own_active().await?.is_empty() {
                return Ok(asked);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::warn!("pods still stopping after {limit:?}; leaving them to the next start");
        Ok(asked)
    }

    /// Tears the container down, then records its final state.
    async fn teardown_and_record(
        &self,
        id: &str,
        status: ContainerStatus,
        exit_code: Option<i32>,
        reason: Option<String>,
    ) {
        self.routes.remove(id);
        self.activities_lock().remove(id);
        let cleanup = match self.node_for(id).await {
            Ok(node) => node.teardown(id).await.err(),
            Err(e) => Some(e),
        };
        if let Some(e) = &cleanup {
            tracing::warn!(container = %id, "teardown: {e}");
        }
        let result = self
            .transition(id, status, |row| {
                row.exit_code = exit_code.or(row.exit_code);
                if let Some(reason) = reason {
                    row.reason = Some(reason);
                }
                if let Some(e) = cleanup {
                    let prefix = row
                        .reason
                        .take()
                        .map(|r| format!("{r}; "))
                        .unwrap_or_default();
                    row.reason = Some(format!("{prefix}cleanup failed: {e}"));
                }
                row.finished_at = Some(now());
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(container = %id, "recording {status}: {e}");
        }
    }

    /// Moves a container to `to` if the state machine allows it, applying `change` to the row
    /// in the same write.
    async fn transition(
        &self,
        id: &str,
        to: ContainerStatus,
        change: impl FnOnce(&mut ContainerRow),
    ) -> Result<ContainerRow, LifecycleError> {
        let _guard = self.write.lock().await;
        let mut row = self
            .store
            .container(id)
            .await?
            .ok_or_else(|| LifecycleError::NotFound(id.to_string()))?;
        if !state::allowed(row.status, to) {
            return Err(LifecycleError::Illegal {
                id: id.to_string(),
                from: row.status,
                to,
            });
        }
        let from = row.status;
        row.status = to;
        change(&mut row);
        self.store.update_container(&row).await?;
        self.transitions.notify_waiters();
        match &row.reason {
            Some(reason) if to.is_terminal() => {
                tracing::info!(container = %id, "{from} → {to} ({reason})")
            }
            _ => tracing::info!(container = %id, "{from} → {to}"),
        }
        Ok(row)
    }

    /// The route of a running container, for serving it under another host name too (a
    /// deployment's). `None` unless it runs.
    pub async fn route_of(&self, id: &str) -> Option<Route> {
        let row = self.store.container(id).await.ok()??;
        (row.status == ContainerStatus::Running).then(|| self.route(&row))
    }

    fn route(&self, row: &ContainerRow) -> Route {
        let activity = self
            .activities_lock()
            .entry(row.id.clone())
            .or_default()
            .clone();
        let addrs = row
            .ipv4
            .map(std::net::IpAddr::V4)
            .into_iter()
            .chain(row.ipv6.map(std::net::IpAddr::V6))
            .collect();
        Route {
            container_id: row.id.clone(),
            addrs,
            ports: row.ports.clone(),
            activity,
            authorized: row.authorized,
            via: self.on_row(row).ok().and_then(|node| node.tunnel()),
        }
    }

    fn add_route(&self, row: &ContainerRow) {
        self.routes.insert(&row.stub_id, self.route(row));
    }

    /// Waits up to `limit` for the starts and stops in flight; returns how many are still
    /// running. The process that takes over would otherwise find them half done.
    pub async fn quiesce(&self, limit: Duration) -> usize {
        self.tasks.close();
        let _ = tokio::time::timeout(limit, self.tasks.wait()).await;
        self.tasks.len()
    }

    /// Records the ends the node pushes and stops pods whose keep-warm deadline passed,
    /// until the task is dropped. One pod's trouble is logged and never stops the watch.
    pub fn spawn_monitor(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        let mut events = self.node.events();
        tokio::spawn(async move {
            let mut idle_tick = tokio::time::interval(IDLE_CHECK_INTERVAL);
            idle_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut worker_tick = tokio::time::interval(workers::WORKER_CHECK_INTERVAL);
            worker_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = worker_tick.tick() => this.spawn_worker_check(),
                    event = next_event(&mut events) => match event {
                        Some(event) => this.on_event(event).await,
                        None => events = None,
                    },
                    _ = idle_tick.tick() => {
                        if let Err(e) = this.check_idle().await {
                            tracing::warn!("idle check: {e}");
                        }
                    }
                }
            }
        })
    }

    /// Checks the workers in a task of its own (a worker's stops must not hold up the
    /// watch), one check at a time.
    fn spawn_worker_check(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.checking_workers.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.check_workers().await {
                tracing::warn!("checking the workers: {e}");
            }
            this.checking_workers.store(false, Ordering::Release);
        });
    }

    async fn on_event(self: &Arc<Self>, event: NodeEvent) {
        match self.store.container(&event.container_id).await {
            // A stop in progress records the end itself; a start records one it raced with.
            Ok(Some(row)) if row.status == ContainerStatus::Running => {
                self.on_process_end(row, event.state)
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(container = %event.container_id, "reading the container: {e}"),
        }
    }

    /// Records how a running container's process ended, and tears it down.
    fn on_process_end(self: &Arc<Self>, row: ContainerRow, state: ProcessState) {
        let pids_note = pids_note(&state);
        let (status, exit_code, reason) = match state {
            ProcessState::Running => return,
            ProcessState::Exited(exit) if exit.oom_killed => (
                ContainerStatus::OomKilled,
                Some(exit.exit_code),
                format!(
                    "killed for exceeding its {} MiB memory limit",
                    row.memory_mib
                ),
            ),
            ProcessState::Exited(exit) if exit.disk_full => (
                ContainerStatus::Exited,
                Some(exit.exit_code),
                format!(
                    "the entrypoint {} with its {} MiB disk full",
                    exit_words(exit.exit_code),
                    row.disk_mib.unwrap_or_default()
                ),
            ),
            ProcessState::Exited(exit) => (
                ContainerStatus::Exited,
                Some(exit.exit_code),
                format!("the entrypoint {}", exit_words(exit.exit_code)),
            ),
            ProcessState::Lost => (
                ContainerStatus::Failed,
                None,
                "the container's monitor process (berth shim) is gone".into(),
            ),
        };
        self.spawn_finish(row.id, status, exit_code, reason + &pids_note);
    }

    fn spawn_finish(
        self: &Arc<Self>,
        id: String,
        status: ContainerStatus,
        exit_code: Option<i32>,
        reason: String,
    ) {
        if !self.claim(&id) {
            return;
        }
        let this = self.clone();
        self.tasks.spawn(async move {
            // Reported twice (pushed, and read after a start): the first one recorded it.
            let ended =
                matches!(this.store.container(&id).await, Ok(Some(r)) if r.status.is_terminal());
            if !ended {
                this.teardown_and_record(&id, status, exit_code, Some(reason))
                    .await;
            }
            this.release(&id);
        });
    }

    /// Stops running containers with no open connection whose keep-warm deadline passed.
    async fn check_idle(self: &Arc<Self>) -> Result<(), LifecycleError> {
        let rows = self.own_active().await?;
        for row in rows
            .into_iter()
            .filter(|r| r.status == ContainerStatus::Running && r.keep_warm_seconds >= 0)
        {
            let id = row.id.clone();
            // A failure on one pod must not end the watch over the others.
            let checked = std::panic::AssertUnwindSafe(self.stop_if_idle(row))
                .catch_unwind()
                .await;
            if checked.is_err() {
                tracing::error!(container = %id, "idle check panicked; the other pods are still watched");
            }
        }
        Ok(())
    }

    async fn stop_if_idle(self: &Arc<Self>, row: ContainerRow) {
        let activity = self.activities_lock().get(&row.id).cloned();
        let (open, last_ms) = match &activity {
            Some(a) => (a.open_connections(), a.last_active_ms()),
            None => (0, None),
        };
        if open > 0 {
            return;
        }
        let since_ms = last_ms.unwrap_or(0).max(
            row.started_at
                .unwrap_or(row.scheduled_at)
                .saturating_mul(1000),
        );
        if !idle_deadline_passed(row.keep_warm_seconds, since_ms, now_ms()) {
            return;
        }
        let reason = format!("idle: no connection for {} s", row.keep_warm_seconds);
        if self
            .transition(&row.id, ContainerStatus::Stopping, |r| {
                r.reason = Some(reason)
            })
            .await
            .is_ok()
        {
            let this = self.clone();
            self.tasks
                .spawn(async move { this.stop_and_finish(row.id, None).await });
        }
    }

    /// After a server restart: adopt running containers, record the ends that happened while
    /// the server was down, finish interrupted stops, and undo starts that were cut off.
    pub async fn recover(self: &Arc<Self>) -> Result<(), LifecycleError> {
        for row in self.own_active().await? {
            let node = match self.on_row(&row) {
                Ok(node) => node,
                Err(e) => {
                    tracing::warn!(container = %row.id, "not recovered: {e}");
                    continue;
                }
            };
            match row.status {
                ContainerStatus::Running => match node.state(&row.id).await {
                    ProcessState::Running => {
                        tracing::info!(container = %row.id, "adopted running container");
                        self.add_route(&row);
                        if let Some(activity) = self.activities_lock().get(&row.id) {
                            activity.touch();
                        }
                    }
                    ended => self.on_process_end(row, ended),
                },
                ContainerStatus::Stopping => {
                    let this = self.clone();
                    self.tasks
                        .spawn(async move { this.stop_and_finish(row.id, None).await });
                }
                _ => {
                    let id = row.id.clone();
                    let _ = node.teardown(&id).await;
                    let _ = self
                        .transition(&id, ContainerStatus::Failed, |r| {
                            r.reason = Some(
                                "the server restarted while the container was starting".into(),
                            );
                            r.finished_at = Some(now());
                        })
                        .await;
                }
            }
        }
        Ok(())
    }

    /// The containers placed on this lifecycle's node and on workers that have not ended:
    /// the ones its recovery, idle checks and stops look after (another control plane's
    /// machine looks after its own).
    async fn own_active(&self) -> Result<Vec<ContainerRow>, LifecycleError> {
        Ok(self
            .store
            .active_containers_managed_by(&self.config.node_id)
            .await?)
    }

    /// The node `node_id` among those the control plane reaches.
    fn on(&self, node_id: &str) -> Result<N, NodeError> {
        self.node
            .member(node_id)
            .ok_or_else(|| NodeError::UnknownNode(node_id.to_string()))
    }

    /// The node `row` is placed on; this machine for a row from before nodes.
    fn on_row(&self, row: &ContainerRow) -> Result<N, NodeError> {
        self.on(row.node_id.as_deref().unwrap_or(&self.config.node_id))
    }

    /// The node `row` is placed on; this machine when there is no row to say.
    fn on_placed(&self, row: Option<&ContainerRow>) -> Result<N, NodeError> {
        match row {
            Some(row) => self.on_row(row),
            None => self.on(&self.config.node_id),
        }
    }

    /// The node container `id` is placed on, by its row.
    async fn node_for(&self, id: &str) -> Result<N, NodeError> {
        self.on_placed(self.store.container(id).await.ok().flatten().as_ref())
    }

    /// Where a pod asking `ask` goes: a node that is up, takes pods and offers its
    /// runtime, with room if one has it (see [`crate::schedule`]).
    async fn place(&self, ask: &Ask) -> Result<String, PlaceError> {
        let now = now();
        let (nodes, usage) = match (self.store.nodes().await, self.store.node_usage().await) {
            (Ok(nodes), Ok(usage)) => (nodes, usage),
            (Err(e), _) | (_, Err(e)) => return Err(PlaceError::NoNode(e.to_string())),
        };
        let candidates = crate::schedule::candidates(nodes, usage, |n| {
            crate::nodes::is_up(n.heartbeat_at, now) && self.node.member(&n.id).is_some()
        });
        let placed = crate::schedule::place(&candidates, &self.config.node_id, ask)?;
        if placed.overcommitted {
            tracing::info!(node = %placed.node_id, "no node has room for the pod's requests; placing it on the roomiest");
        }
        Ok(placed.node_id)
    }

    pub async fn get(&self, id: &str) -> Result<Option<Container>, LifecycleError> {
        Ok(self.store.container(id).await?.map(|row| self.view(row)))
    }

    /// Runs a command in a running pod, its output streamed.
    pub async fn exec(
        &self,
        id: &str,
        exec: crate::node::ExecCommand,
    ) -> Result<crate::node::ExecStream, LifecycleError> {
        let node = self.running(id, "exec").await?;
        Ok(node.exec(id, exec).await?)
    }

    /// Runs an interactive command in a running pod on a terminal.
    pub async fn exec_tty(
        &self,
        id: &str,
        exec: crate::node::ExecCommand,
        size: crate::node::TtySize,
    ) -> Result<crate::node::TtySession, LifecycleError> {
        let node = self.running(id, "exec").await?;
        Ok(node.exec_tty(id, exec, size).await?)
    }

    /// Streams a file out of a running pod.
    pub async fn read_file(
        &self,
        id: &str,
        path: String,
        max: u64,
    ) -> Result<crate::node::FileDownload, LifecycleError> {
        let node = self.running(id, "reading files").await?;
        Ok(node.read_file(id, path, max).await?)
    }

    /// Writes a file into a running pod, whole or not at all.
    pub async fn write_file(
        &self,
        id: &str,
        path: String,
        mode: u32,
        body: crate::node::UploadBody,
        max: u64,
    ) -> Result<u64, LifecycleError> {
        let node = self.running(id, "writing files").await?;
        Ok(node.write_file(id, path, mode, body, max).await?)
    }

    pub async fn list_files(
        &self,
        id: &str,
        path: String,
    ) -> Result<berth_api::FileListing, LifecycleError> {
        let node = self.running(id, "listing files").await?;
        Ok(node.list_files(id, path).await?)
    }

    pub async fn make_dir(
        &self,
        id: &str,
        path: String,
        mode: u32,
    ) -> Result<bool, LifecycleError> {
        let node = self.running(id, "making directories").await?;
        Ok(node.make_dir(id, path, mode).await?)
    }

    /// The node of the container, unless it does not exist or is not running.
    async fn running(&self, id: &str, what: &'static str) -> Result<N, LifecycleError> {
        let row = self
            .store
            .container(id)
            .await?
            .ok_or_else(|| LifecycleError::NotFound(id.to_string()))?;
        if row.status != ContainerStatus::Running {
            return Err(LifecycleError::NotRunning {
                id: id.to_string(),
                status: row.status,
                what,
            });
        }
        Ok(self.on_row(&row)?)
    }

    pub async fn list(&self, all: bool) -> Result<Vec<Container>, LifecycleError> {
        Ok(self
            .store
            .containers(!all)
            .await?
            .into_iter()
            .map(|row| self.view(row))
            .collect())
    }

    /// The container's log; with `follow`, it waits for a starting container to run and
    /// streams until the container has ended.
    pub async fn logs(&self, id: &str, follow: bool) -> Result<LogStream, LifecycleError> {
        loop {
            // Armed before the read: a change after it still wakes us at once.
            let changed = self.transitions.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let row = self
                .store
                .container(id)
                .await?
                .ok_or_else(|| LifecycleError::NotFound(id.to_string()))?;
            if !follow || !row.status.is_starting() {
                break;
            }
            let _ = tokio::time::timeout(START_WAIT_INTERVAL, changed).await;
        }
        Ok(self.node_for(id).await?.logs(id, follow).await?)
    }

    /// How many containers are in each state.
    pub async fn status_counts(&self) -> Result<Vec<(ContainerStatus, i64)>, LifecycleError> {
        let counts = self.store.count_by_status().await?;
        Ok(ContainerStatus::ALL
            .into_iter()
            .map(|status| {
                let n = counts
                    .iter()
                    .find(|(s, _)| s == status.as_str())
                    .map_or(0, |(_, n)| *n);
                (status, n)
            })
            .collect())
    }

    /// Open ingress connections per running container.
    pub fn open_connections(&self) -> usize {
        self.activities_lock()
            .values()
            .map(|a| a.open_connections())
            .sum()
    }

    pub fn url(&self, stub_id: &str, port: u16) -> String {
        let scheme = self.config.url_scheme;
        let suffix = match (scheme, self.config.url_port) {
            ("http", 80) | ("https", 443) => String::new(),
            (_, p) => format!(":{p}"),
        };
        format!("{scheme}://{stub_id}-{port}.{}{suffix}", self.config.domain)
    }

    fn view(&self, row: ContainerRow) -> Container {
        let progress = self
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&row.id)
            .cloned();
        let stop_grace_seconds = self.grace_of(&row).as_secs();
        Container {
            urls: row
                .ports
                .iter()
                .map(|p| self.url(&row.stub_id, *p))
                .collect(),
            id: row.id,
            stub_id: row.stub_id,
            deployment_id: row.deployment_id,
            status: row.status,
            image: row.image,
            ports: row.ports,
            exit_code: row.exit_code,
            reason: row.reason,
            progress,
            cpu_millis: row.cpu_millis,
            memory_mib: row.memory_mib,
            keep_warm_seconds: row.keep_warm_seconds,
            scheduled_at: row.scheduled_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            authorized: row.authorized,
            runtime: row.runtime,
            block_network: row.block_network,
            allow_list: row.allow_list,
            read_only_rootfs: row.read_only_rootfs,
            privileged_user: row.privileged_user,
            disk_mib: row.disk_mib,
            init: row.init,
            stop_signal: row.stop_signal,
            stop_grace_seconds,
            node: row.node_id,
        }
    }

    fn set_progress(&self, id: &str, line: String) {
        self.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), line);
    }

    fn clear_progress(&self, id: &str) {
        self.progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    fn activities_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Activity>>> {
        self.activities.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn claim(&self, id: &str) -> bool {
        self.busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string())
    }

    fn release(&self, id: &str) {
        self.busy
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// Whether some container of `stub_id` is on its way to running.
    async fn stub_is_starting(&self, stub_id: &str) -> bool {
        match self.store.containers(true).await {
            Ok(rows) => rows
                .iter()
                .any(|r| r.stub_id == stub_id && r.status.is_starting()),
            Err(_) => false,
        }
    }
}

/// The next pushed end, or never once the node's stream is gone.
async fn next_event(
    events: &mut Option<tokio::sync::mpsc::UnboundedReceiver<NodeEvent>>,
) -> Option<NodeEvent> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl<N: Node> Lifecycle<N> {
    /// For a pod host with no route: a request that arrives while its pod is still starting
    /// waits for it (bounded) instead of getting a 404.
    pub async fn route_when_started(&self, pod: &PodHost) -> Option<Arc<Route>> {
        let deadline = tokio::time::Instant::now() + START_WAIT_LIMIT;
        while tokio::time::Instant::now() < deadline {
            // Armed before the lookup: a route added after it still wakes us at once.
            let inserted = self.routes.inserted();
            tokio::pin!(inserted);
            inserted.as_mut().enable();
            if let Some(route) = self.routes.lookup(&pod.stub_id, pod.port) {
                // Just started: let the app listen before the request goes on.
                crate::readiness::until_accepting(&route, pod.port, ACCEPT_WAIT_LIMIT).await;
                return Some(route);
            }
            if !self.stub_is_starting(&pod.stub_id).await {
                // It may have become routable between the lookup and the check.
                return self.routes.lookup(&pod.stub_id, pod.port);
            }
            // The route's insert, or a while to see whether the pod is still starting.
            let _ = tokio::time::timeout(START_WAIT_INTERVAL, inserted).await;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{PreparedImage, ProgressFn};
    use berth_runtime::ExitRecord;
    use bytes::Bytes;
    use futures_util::StreamExt;

    /// A node that runs nothing: tests drive its processes' fate by hand and push their
    /// ends as the real node does.
    struct FakeNode {
        fail_pull: bool,
        /// Pulls wait until this closes (`None`: they do not wait).
        pull_gate: Option<tokio::sync::watch::Receiver<bool>>,
        states: Mutex<HashMap<String, ProcessState>>,
        teardowns: Mutex<Vec<String>>,
        /// Each stop: the container, the signal sent first, the grace.
        stops: Mutex<Vec<(String, berth_runtime::Signal, Duration)>>,
        events_tx: tokio::sync::mpsc::UnboundedSender<NodeEvent>,
        events_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<NodeEvent>>>,
    }

    impl Default for FakeNode {
        fn default() -> Self {
            let (events_tx, rx) = tokio::sync::mpsc::unbounded_channel();
            FakeNode {
                fail_pull: false,
                pull_gate: None,
                states: Mutex::default(),
                teardowns: Mutex::default(),
                stops: Mutex::default(),
                events_tx,
                events_rx: Mutex::new(Some(rx)),
            }
        }
    }

    impl FakeNode {
        /// The container's process ends; the node pushes it.
        fn end(&self, id: &str, state: ProcessState) {
            self.states
                .lock()
                .expect("lock")
                .insert(id.to_string(), state);
            self.events_tx
                .send(NodeEvent {
                    container_id: id.to_string(),
                    state,
                })
                .expect("send");
        }
    }

    fn exited(code: i32, oom: bool) -> ProcessState {
        ProcessState::Exited(ExitRecord {
            exit_code: code,
            signal: None,
            oom_killed: oom,
            disk_full: false,
            pids_limited: false,
            finished_at: 0,
        })
    }

    impl Node for Arc<FakeNode> {
        fn member(&self, _node_id: &str) -> Option<Self> {
            Some(self.clone())
        }

        async fn running_containers(&self) -> Result<Vec<String>, NodeError> {
            Ok(self
                .states
                .lock()
                .expect("lock")
                .iter()
                .filter(|(_, s)| **s == ProcessState::Running)
                .map(|(id, _)| id.clone())
                .collect())
        }

        async fn prepare_image(
            &self,
            image: &ImageSource,
            progress: ProgressFn,
        ) -> Result<PreparedImage, NodeError> {
            let name = crate::spec::image_name(image);
            progress(format!("Pulling image {name}: 0/1 layers"));
            if let Some(gate) = &self.pull_gate {
                let mut gate = gate.clone();
                let _ = gate.wait_for(|open| *open).await;
            }
            if self.fail_pull {
                return Err(NodeError::ImageNotPrepared(name));
            }
            Ok(PreparedImage { reference: name })
        }

        async fn start(&self, req: StartContainer) -> Result<crate::node::Started, NodeError> {
            self.states
                .lock()
                .expect("lock")
                .insert(req.container_id, ProcessState::Running);
            Ok(crate::node::Started {
                ports: if req.ports.is_empty() {
                    vec![80]
                } else {
                    req.ports
                },
                ipv4: Some("10.0.0.2".parse().expect("ip")),
                ipv6: None,
                init: req.init,
                stop_signal: req.stop_signal.unwrap_or_else(|| "SIGTERM".into()),
                phases: vec![("network".into(), Duration::from_millis(1))],
            })
        }

        async fn stop(
            &self,
            id: &str,
            signal: berth_runtime::Signal,
            grace: Duration,
        ) -> crate::node::Stopped {
            self.stops
                .lock()
                .expect("lock")
                .push((id.to_string(), signal, grace));
            let state = exited(128 + signal as i32, false);
            self.states
                .lock()
                .expect("lock")
                .insert(id.to_string(), state);
            crate::node::Stopped {
                state,
                path: StopPath::Signal(signal.as_str().to_string()),
            }
        }

        async fn teardown(&self, id: &str) -> Result<(), NodeError> {
            self.teardowns.lock().expect("lock").push(id.to_string());
            Ok(())
        }

        async fn state(&self, id: &str) -> ProcessState {
            *self
                .states
                .lock()
                .expect("lock")
                .get(id)
                .unwrap_or(&ProcessState::Lost)
        }

        fn events(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<NodeEvent>> {
            self.events_rx.lock().expect("lock").take()
        }

        async fn logs(&self, _id: &str, _follow: bool) -> Result<LogStream, NodeError> {
            Ok(futures_util::stream::empty().boxed())
        }

        async fn build(
            &self,
            req: crate::node::BuildImage,
            _log: ProgressFn,
            _cancelled: Arc<std::sync::atomic::AtomicBool>,
        ) -> Result<crate::node::BuiltImage, NodeError> {
            Err(NodeError::ImageNotPrepared(format!("{:?}", req.spec)))
        }

        async fn images(&self) -> Vec<berth_api::ImageSummary> {
            Vec::new()
        }

        async fn prune(&self, _keep: HashSet<String>) -> berth_api::PruneResult {
            berth_api::PruneResult {
                removed_images: Vec::new(),
                removed_layers: 0,
                freed_bytes: 0,
            }
        }

        async fn put_code(
            &self,
            digest: String,
            _archive: Bytes,
        ) -> Result<berth_api::CodeUploaded, NodeError> {
            Err(NodeError::CodeMissing(digest))
        }

        fn has_code(&self, _digest: &str) -> bool {
            false
        }

        fn runtimes(&self) -> Vec<berth_runtime::RuntimeKind> {
            vec![berth_runtime::RuntimeKind::Runc]
        }

        async fn exec(
            &self,
            _id: &str,
            _exec: crate::node::ExecCommand,
        ) -> Result<crate::node::ExecStream, NodeError> {
            Ok(Box::pin(futures_util::stream::iter([
                berth_api::ExecEvent::Exit(0),
            ])))
        }

        async fn exec_tty(
            &self,
            _id: &str,
            _exec: crate::node::ExecCommand,
            _size: crate::node::TtySize,
        ) -> Result<crate::node::TtySession, NodeError> {
            Err(NodeError::Files(berth_runtime::PodFilesError::NotFound(
                "a terminal".into(),
            )))
        }

        async fn read_file(
            &self,
            _id: &str,
            path: String,
            _max: u64,
        ) -> Result<crate::node::FileDownload, NodeError> {
            Err(berth_runtime::PodFilesError::NotFound(path).into())
        }

        async fn write_file(
            &self,
            _id: &str,
            _path: String,
            _mode: u32,
            _body: crate::node::UploadBody,
            _max: u64,
        ) -> Result<u64, NodeError> {
            Ok(0)
        }

        async fn make_dir(&self, _id: &str, _path: String, _mode: u32) -> Result<bool, NodeError> {
            Ok(true)
        }

        async fn list_files(
            &self,
            _id: &str,
            path: String,
        ) -> Result<berth_api::FileListing, NodeError> {
            Ok(berth_api::FileListing {
                path,
                entries: Vec::new(),
                truncated: false,
            })
        }

        async fn volumes(&self) -> Result<Vec<berth_api::Volume>, NodeError> {
            Ok(Vec::new())
        }

        async fn delete_volume(&self, _name: &str) -> Result<bool, NodeError> {
            Ok(false)
        }
    }

    struct Harness {
        _dir: tempfile::TempDir,
        node: Arc<FakeNode>,
        routes: Arc<RouteTable>,
        lifecycle: Arc<Lifecycle<Arc<FakeNode>>>,
    }

    async fn harness(node: FakeNode) -> Harness {
        harness_limited(node, 64).await
    }

    async fn harness_limited(node: FakeNode, max_pending_starts: usize) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db")).await.expect("store");
        // The one machine pods are placed on.
        store
            .register_node(&crate::nodes::this_node(
                "node-test".into(),
                vec!["runc".into()],
                Default::default(),
                true,
            ))
            .await
            .expect("register");
        let node = Arc::new(node);
        let routes = Arc::new(RouteTable::new());
        let lifecycle = Lifecycle::new(
            store,
            node.clone(),
            routes.clone(),
            LifecycleConfig {
                domain: "example.test".into(),
                url_scheme: "http",
                url_port: 80,
                stop_grace: Duration::from_secs(1),
                max_pending_starts,
                node_id: "node-test".into(),
            },
            None,
        );
        Harness {
            _dir: dir,
            node,
            routes,
            lifecycle,
        }
    }

    fn spec(keep_warm_seconds: i64) -> PodSpec {
        PodSpec {
            image: "img".into(),
            ports: vec![8080],
            cpu_millis: 1000,
            memory_mib: 64,
            env: Default::default(),
            entrypoint: None,
            keep_warm_seconds,
            volumes: vec![],
            secrets: vec![],
            code: None,
            workdir: None,
            authorized: false,
            runtime: None,
            block_network: false,
            allow_list: vec![],
            read_only_rootfs: false,
            privileged_user: false,
            disk_mib: None,
            init: true,
            stop_signal: None,
            stop_grace_seconds: None,
        }
    }

    async fn wait_for(h: &Harness, id: &str, status: ContainerStatus) -> Container {
        // Up to 10 s: a deadline for a loaded CI machine, not a timing assertion.
        for _ in 0..1000 {
            let c = h.lifecycle.get(id).await.expect("get").expect("exists");
            if c.status == status {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{id} never became {status}");
    }

    #[tokio::test]
    async fn create_runs_routes_and_stop_tears_down_once() {
        let h = harness(FakeNode::default()).await;
        let c = h.lifecycle.create(spec(-1)).await.expect("create");
        assert_eq!(c.status, ContainerStatus::Pending);
        assert_eq!(c.urls, [format!("http://{}-8080.example.test", c.stub_id)]);
        wait_for(&h, &c.id, ContainerStatus::Running).await;
        // The route is added just after the row says RUNNING.
        for _ in 0..100 {
            if h.routes.lookup(&c.stub_id, 8080).is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(h.routes.lookup(&c.stub_id, 8080).is_some());

        h.lifecycle.stop(&c.id, None).await.expect("stop");
        let done = wait_for(&h, &c.id, ContainerStatus::Stopped).await;
        assert_eq!(done.exit_code, Some(143));
        assert_eq!(done.reason.as_deref(), Some("stopped by request (SIGTERM)"));
        assert!(h.routes.lookup(&c.stub_id, 8080).is_none());
        assert_eq!(
            *h.node.teardowns.lock().expect("lock"),
            std::slice::from_ref(&c.id)
        );
        // Stopping again changes nothing.
        assert_eq!(
            h.lifecycle.stop(&c.id, None).await.expect("stop").status,
            ContainerStatus::Stopped
        );
    }

    #[tokio::test]
    async fn a_pods_stop_signal_and_grace_are_what_its_stop_sends() {
        let h = harness(FakeNode::default()).await;
        let mut own = spec(-1);
        own.stop_signal = Some("SIGINT".into());
        own.stop_grace_seconds = Some(7);
        let c = h.lifecycle.create(own).await.expect("create");
        let running = wait_for(&h, &c.id, ContainerStatus::Running).await;
        assert_eq!(running.stop_signal.as_deref(), Some("SIGINT"));
        assert_eq!(running.stop_grace_seconds, 7);
        assert!(running.init);
        h.lifecycle.stop(&c.id, None).await.expect("stop");
        let done = wait_for(&h, &c.id, ContainerStatus::Stopped).await;
        assert_eq!(done.reason.as_deref(), Some("stopped by request (SIGINT)"));
        assert_eq!(done.exit_code, Some(130));
        // A grace given with the stop wins over the pod's.
        let d = h.lifecycle.create(spec(-1)).await.expect("create");
        wait_for(&h, &d.id, ContainerStatus::Running).await;
        h.lifecycle
            .stop(&d.id, Some(Duration::from_secs(3)))
            .await
            .expect("stop");
        wait_for(&h, &d.id, ContainerStatus::Stopped).await;
        let stops = h.node.stops.lock().expect("lock").clone();
        assert_eq!(
            stops,
            [
                (
                    c.id.clone(),
                    berth_runtime::Signal::SIGINT,
                    Duration::from_secs(7)
                ),
                (
                    d.id.clone(),
                    berth_runtime::Signal::SIGTERM,
                    Duration::from_secs(3)
                ),
            ]
        );
    }

    #[tokio::test]
    async fn stop_all_stops_every_pod_and_waits_for_them() {
        let h = harness(FakeNode::default()).await;
        let mut ids = Vec::new();
        for _ in 0..5 {
            let c = h.lifecycle.create(spec(-1)).await.expect("create");
            wait_for(&h, &c.id, ContainerStatus::Running).await;
            ids.push(c.id);
        }
        assert_eq!(h.lifecycle.stop_all().await.expect("stop all"), 5);
        for id in &ids {
            let c = h.lifecycle.get(id).await.expect("get").expect("exists");
            assert_eq!(c.status, ContainerStatus::Stopped, "{id}");
        }
        assert_eq!(h.node.stops.lock().expect("lock").len(), 5);
    }

    #[test]
    fn exit_codes_read_as_a_shell_would_explain_them() {
        assert_eq!(exit_words(3), "exited with code 3");
        assert_eq!(exit_words(127), "exited with code 127 (command not found)");
        assert_eq!(exit_words(139), "exited with code 139 (SIGSEGV)");
        assert_eq!(exit_words(200), "exited with code 200");
    }

    #[tokio::test]
    async fn pushed_exits_and_oom_kills_are_recorded_by_the_monitor() {
        let h = harness(FakeNode::default()).await;
        let a = h.lifecycle.create(spec(-1)).await.expect("create");
        let b = h.lifecycle.create(spec(-1)).await.expect("create");
        wait_for(&h, &a.id, ContainerStatus::Running).await;
        wait_for(&h, &b.id, ContainerStatus::Running).await;
        let _monitor = h.lifecycle.spawn_monitor();
        h.node.end(&a.id, exited(7, false));
        h.node.end(&b.id, exited(137, true));
        assert_eq!(
            wait_for(&h, &a.id, ContainerStatus::Exited).await.exit_code,
            Some(7)
        );
        wait_for(&h, &b.id, ContainerStatus::OomKilled).await;
        assert_eq!(h.node.teardowns.lock().expect("lock").len(), 2);
    }

    #[tokio::test]
    async fn idle_pods_stop_and_open_connections_or_minus_one_keep_them() {
        let h = harness(FakeNode::default()).await;
        let idle = h.lifecycle.create(spec(0)).await.expect("create");
        let forever = h.lifecycle.create(spec(-1)).await.expect("create");
        let busy = h.lifecycle.create(spec(0)).await.expect("create");
        for c in [&idle, &forever, &busy] {
            wait_for(&h, &c.id, ContainerStatus::Running).await;
        }
        let route = h.routes.lookup(&busy.stub_id, 8080).expect("route");
        let guard = route.activity.connect();
        h.lifecycle.check_idle().await.expect("check");
        wait_for(&h, &idle.id, ContainerStatus::Stopped).await;
        let kept = h
            .lifecycle
            .get(&busy.id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(
            kept.status,
            ContainerStatus::Running,
            "an open connection keeps a pod"
        );
        let kept = h
            .lifecycle
            .get(&forever.id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(kept.status, ContainerStatus::Running, "-1 never idles out");
        drop(guard);
        h.lifecycle.check_idle().await.expect("check");
        wait_for(&h, &busy.id, ContainerStatus::Stopped).await;
    }

    #[tokio::test]
    async fn creates_past_the_pending_limit_are_refused_until_one_starts() {
        let (open, gate) = tokio::sync::watch::channel(false);
        let h = harness_limited(
            FakeNode {
                pull_gate: Some(gate),
                ..FakeNode::default()
            },
            2,
        )
        .await;
        // The harness allows two starts in flight; both wait in their pull.
        let a = h.lifecycle.create(spec(-1)).await.expect("first");
        let _b = h.lifecycle.create(spec(-1)).await.expect("second");
        let refused = h.lifecycle.create(spec(-1)).await.expect_err("third");
        assert!(
            matches!(refused, LifecycleError::Busy { limit: 2 }),
            "{refused}"
        );
        // Nothing was recorded for the refused one.
        assert_eq!(h.lifecycle.list(true).await.expect("list").len(), 2);
        open.send_replace(true);
        wait_for(&h, &a.id, ContainerStatus::Running).await;
        let mut admitted = None;
        for _ in 0..100 {
            match h.lifecycle.create(spec(-1)).await {
                Ok(c) => {
                    admitted = Some(c);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        assert!(
            admitted.is_some(),
            "a start that finished gives its slot back"
        );
    }

    #[tokio::test]
    async fn failed_pull_is_failed_with_the_reason() {
        let h = harness(FakeNode {
            fail_pull: true,
            ..FakeNode::default()
        })
        .await;
        let c = h.lifecycle.create(spec(-1)).await.expect("create");
        let failed = wait_for(&h, &c.id, ContainerStatus::Failed).await;
        assert_eq!(
            failed.reason.as_deref(),
            Some("the image img is not on this node; prepare it first")
        );
        assert!(h.lifecycle.list(false).await.expect("list").is_empty());
        assert_eq!(h.lifecycle.list(true).await.expect("list").len(), 1);
    }

    #[tokio::test]
    async fn recovery_fails_interrupted_starts_and_adopts_running_pods() {
        let h = harness(FakeNode::default()).await;
        let running = h.lifecycle.create(spec(-1)).await.expect("create");
        wait_for(&h, &running.id, ContainerStatus::Running).await;
        let mut row = h
            .lifecycle
            .store
            .container(&running.id)
            .await
            .expect("get")
            .expect("row");
        row.id = format!("{}-cut", row.id);
        row.status = ContainerStatus::Starting;
        h.lifecycle
            .store
            .insert_container(&row)
            .await
            .expect("insert");

        // A new server over the same store and node.
        let fresh = Lifecycle::new(
            h.lifecycle.store.clone(),
            h.node.clone(),
            Arc::new(RouteTable::new()),
            h.lifecycle.config.clone(),
            None,
        );
        // A scale-to-zero pod up longer than its keep-warm period before the restart.
        let warm = h.lifecycle.create(spec(1)).await.expect("create");
        wait_for(&h, &warm.id, ContainerStatus::Running).await;
        tokio::time::sleep(Duration::from_millis(2100)).await;

        fresh.recover().await.expect("recover");
        fresh.check_idle().await.expect("check");
        let adopted = fresh.get(&warm.id).await.expect("get").expect("exists");
        assert_eq!(
            adopted.status,
            ContainerStatus::Running,
            "an adopted pod gets a fresh keep-warm period"
        );
        let cut = fresh.get(&row.id).await.expect("get").expect("exists");
        assert_eq!(cut.status, ContainerStatus::Failed);
        assert!(h.node.teardowns.lock().expect("lock").contains(&row.id));
        assert!(
            fresh.routes.lookup(&running.stub_id, 8080).is_some(),
            "running pod adopted"
        );
    }

    #[test]
    fn idle_deadlines_saturate_instead_of_overflowing() {
        assert!(idle_deadline_passed(0, 1_000, 1_000));
        assert!(idle_deadline_passed(1, 1_000, 2_000));
        assert!(!idle_deadline_passed(1, 1_000, 1_999));
        assert!(!idle_deadline_passed(-1, 0, i64::MAX), "-1 never idles out");
        // i64::MAX * 1000 used to wrap negative and stop the pod at once.
        assert!(!idle_deadline_passed(i64::MAX, 1_000, 2_000));
    }

    #[tokio::test]
    async fn a_pod_with_a_huge_keep_warm_stays_and_the_others_are_still_watched() {
        let h = harness(FakeNode::default()).await;
        let huge = h.lifecycle.create(spec(-1)).await.expect("create");
        let idle = h.lifecycle.create(spec(0)).await.expect("create");
        wait_for(&h, &huge.id, ContainerStatus::Running).await;
        wait_for(&h, &idle.id, ContainerStatus::Running).await;
        // A row the API would refuse today, as an older server may have stored it.
        let mut row = h
            .lifecycle
            .store
            .container(&huge.id)
            .await
            .expect("get")
            .expect("row");
        row.keep_warm_seconds = i64::MAX;
        row.started_at = Some(i64::MAX);
        h.lifecycle
            .store
            .update_container(&row)
            .await
            .expect("update");

        let _monitor = h.lifecycle.spawn_monitor();
        wait_for(&h, &idle.id, ContainerStatus::Stopped).await;
        let kept = h
            .lifecycle
            .get(&huge.id)
            .await
            .expect("get")
            .expect("exists");
        assert_eq!(kept.status, ContainerStatus::Running);
        // The monitor is still alive: a later exit is still recorded.
        h.node.end(&huge.id, exited(0, false));
        wait_for(&h, &huge.id, ContainerStatus::Exited).await;
    }

    #[tokio::test]
    async fn an_end_pushed_before_the_pod_counts_as_running_is_not_lost() {
        let h = harness(FakeNode::default()).await;
        let _monitor = h.lifecycle.spawn_monitor();
        let c = h.lifecycle.create(spec(-1)).await.expect("create");
        // The process ends at once; the event may well arrive while the row says STARTING.
        for _ in 0..200 {
            if h.node.states.lock().expect("lock").contains_key(&c.id) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        h.node.end(&c.id, exited(0, false));
        let done = wait_for(&h, &c.id, ContainerStatus::Exited).await;
        assert_eq!(done.exit_code, Some(0));
        assert_eq!(
            h.node.teardowns.lock().expect("lock").len(),
            1,
            "torn down once"
        );
    }

    #[tokio::test]
    async fn recovery_records_ends_that_happened_while_the_server_was_down() {
        let h = harness(FakeNode::default()).await;
        let c = h.lifecycle.create(spec(-1)).await.expect("create");
        wait_for(&h, &c.id, ContainerStatus::Running).await;
        // The server is gone; the pod exits; nothing is pushed to anyone.
        h.node
            .states
            .lock()
            .expect("lock")
            .insert(c.id.clone(), exited(5, false));
        let fresh = Lifecycle::new(
            h.lifecycle.store.clone(),
            h.node.clone(),
            Arc::new(RouteTable::new()),
            h.lifecycle.config.clone(),
            None,
        );
        fresh.recover().await.expect("recover");
        for _ in 0..200 {
            let got = fresh.get(&c.id).await.expect("get").expect("exists");
            if got.status == ContainerStatus::Exited {
                assert_eq!(got.exit_code, Some(5));
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the exit was not recorded");
    }

    #[tokio::test]
    async fn a_silent_workers_pods_are_lost_and_stopped_when_it_comes_back() {
        let h = harness(FakeNode::default()).await;
        let store = h.lifecycle.store.clone();
        let mut worker = crate::nodes::this_node(
            "node-w".into(),
            vec!["runc".into()],
            Default::default(),
            true,
        );
        // Far roomier than the test machine, so the pod goes there.
        worker.cpu_millis = 1_000_000;
        worker.memory_mib = 64 * 1024 * 1024;
        worker.agent_address = Some("10.0.0.2:7444".into());
        store.register_node(&worker).await.expect("register");
        let c = h.lifecycle.create(spec(-1)).await.expect("create");
        wait_for(&h, &c.id, ContainerStatus::Running).await;
        let row = store.container(&c.id).await.expect("get").expect("row");
        assert_eq!(row.node_id.as_deref(), Some("node-w"));

        // Silent past the limit: the pod is LOST and no longer routed; nothing is sent to
        // a worker that cannot be reached.
        store
            .heartbeat_node("node-w", now() - 60)
            .await
            .expect("heartbeat");
        h.lifecycle.check_workers().await.expect("check");
        let lost = store.container(&c.id).await.expect("get").expect("row");
        assert_eq!(lost.status, ContainerStatus::Lost);
        assert!(lost.reason.as_deref().is_some_and(|r| r.contains("node-w")));
        assert!(h.routes.lookup(&c.stub_id, 8080).is_none());
        assert!(h.node.stops.lock().expect("lock").is_empty());

        // Back, still running it: the worker is told to stop it and tear it down, and a
        // pod the control plane wants there is left alone.
        store
            .heartbeat_node("node-w", now())
            .await
            .expect("heartbeat");
        let wanted = h.lifecycle.create(spec(-1)).await.expect("create");
        wait_for(&h, &wanted.id, ContainerStatus::Running).await;
        h.lifecycle.check_workers().await.expect("check");
        let stops = h.node.stops.lock().expect("lock").clone();
        assert_eq!(stops.len(), 1, "{stops:?}");
        assert_eq!(stops[0].0, c.id);
        assert!(h.node.teardowns.lock().expect("lock").contains(&c.id));
        let still = store
            .container(&wanted.id)
            .await
            .expect("get")
            .expect("row");
        assert_eq!(still.status, ContainerStatus::Running);
    }
}
