//! The control plane's lifecycle: create, start, stop, exit, idle and recovery, all going
//! through one transition function and one teardown path.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api::{Container, ContainerStatus, ImageSource};
use berth_proxy::{Activity, Route, RouteTable};
use rand::Rng;

use crate::node::{Node, ProcessState, StartRequest, Started};
use crate::spec::PodSpec;
use crate::state;
use crate::store::{ContainerRow, Store, StoreError};

/// How often exits and idle deadlines are checked.
const MONITOR_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no container {0}")]
    NotFound(String),
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
    /// The ingress port, shown in URLs unless it is 80.
    pub url_port: u16,
    pub stop_grace: Duration,
}

pub struct Lifecycle<N: Node> {
    store: Store,
    node: N,
    routes: Arc<RouteTable>,
    config: LifecycleConfig,
    activities: Mutex<HashMap<String, Arc<Activity>>>,
    progress: Mutex<HashMap<String, String>>,
    /// Containers whose exit or stop is being handled, so it is handled once.
    busy: Mutex<HashSet<String>>,
    /// Serialises read-modify-write of container rows.
    write: tokio::sync::Mutex<()>,
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

impl<N: Node> Lifecycle<N> {
    pub fn new(
        store: Store,
        node: N,
        routes: Arc<RouteTable>,
        config: LifecycleConfig,
    ) -> Arc<Self> {
        Arc::new(Lifecycle {
            store,
            node,
            routes,
            config,
            activities: Mutex::default(),
            progress: Mutex::default(),
            busy: Mutex::default(),
            write: tokio::sync::Mutex::new(()),
        })
    }

    pub fn node(&self) -> &N {
        &self.node
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Records the container as PENDING and starts it in the background.
    pub async fn create(self: &Arc<Self>, spec: PodSpec) -> Result<Container, LifecycleError> {
        let stub_id = spec.stub_id();
        let id = format!("pod-{stub_id}-{:08x}", rand::rng().random::<u32>());
        let at = now();
        self.store.upsert_stub(&stub_id, &spec, at).await?;
        let row = ContainerRow {
            id: id.clone(),
            stub_id: stub_id.clone(),
            deployment_id: None,
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
        };
        self.store.insert_container(&row).await?;
        tracing::info!(container = %id, image = %spec.image_name(), "PENDING");
        let this = self.clone();
        let req = StartRequest { id, stub_id, spec };
        tokio::spawn(async move { this.start(req).await });
        Ok(self.view(row))
    }

    async fn start(self: Arc<Self>, req: StartRequest) {
        let id = req.id.clone();
        let (phase, line) = match &req.spec.image {
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
        let image = match self.node.pull(&req.spec, progress).await {
            Ok(image) => image,
            Err(e) => return self.fail_start(&id, e.to_string()).await,
        };
        if self
            .transition(&id, ContainerStatus::Starting, |_| {})
            .await
            .is_err()
        {
            return self.finish_early_stop(&id).await;
        }
        self.set_progress(&id, "Creating container".into());
        let started = match self.node.start(req.clone(), image).await {
            Ok(started) => started,
            Err(e) => return self.fail_start(&id, e.to_string()).await,
        };
        let Started {
            image,
            ports,
            addrs,
        } = started;
        let running = self
            .transition(&id, ContainerStatus::Running, |row| {
                row.image = image;
                row.ports = ports.clone();
                row.started_at = Some(now());
                for addr in &addrs {
                    match addr {
                        std::net::IpAddr::V4(a) => row.ipv4 = Some(a.to_string()),
                        std::net::IpAddr::V6(a) => row.ipv6 = Some(a.to_string()),
                    }
                }
            })
            .await;
        self.clear_progress(&id);
        match running {
            Ok(row) => self.add_route(&row),
            // Stopped while starting: the stop is ours to carry out.
            Err(_) => {
                let this = self.clone();
                tokio::spawn(async move { this.stop_and_finish(id, None).await });
            }
        }
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
        let _ = self.node.teardown(id).await;
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
            tokio::spawn(async move { this.stop_and_finish(id, grace).await });
        }
        Ok(self.view(row))
    }

    /// SIGTERM, grace, SIGKILL, teardown, STOPPED: the one way a stop completes.
    async fn stop_and_finish(self: Arc<Self>, id: String, grace: Option<Duration>) {
        if !self.claim(&id) {
            return;
        }
        self.routes.remove(&id);
        let state = self
            .node
            .stop(&id, grace.unwrap_or(self.config.stop_grace))
            .await;
        let exit_code = match state {
            ProcessState::Exited(rec) => Some(rec.exit_code),
            _ => None,
        };
        self.teardown_and_record(&id, ContainerStatus::Stopped, exit_code, None)
            .await;
        self.release(&id);
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
        let cleanup = self.node.teardown(id).await.err();
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
        match &row.reason {
            Some(reason) if to.is_terminal() => {
                tracing::info!(container = %id, "{from} → {to} ({reason})")
            }
            _ => tracing::info!(container = %id, "{from} → {to}"),
        }
        Ok(row)
    }

    fn add_route(&self, row: &ContainerRow) {
        let activity = self
            .activities_lock()
            .entry(row.id.clone())
            .or_default()
            .clone();
        let addrs = row
            .ipv4
            .iter()
            .chain(row.ipv6.iter())
            .filter_map(|a| a.parse().ok())
            .collect();
        self.routes.insert(
            &row.stub_id,
            Route {
                container_id: row.id.clone(),
                addrs,
                ports: row.ports.clone(),
                activity,
            },
        );
    }

    /// Watches running containers for exits and idle deadlines, forever.
    pub fn spawn_monitor(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = this.check_running().await {
                    tracing::warn!("monitor: {e}");
                }
                tokio::time::sleep(MONITOR_INTERVAL).await;
            }
        })
    }

    async fn check_running(self: &Arc<Self>) -> Result<(), LifecycleError> {
        let rows = self.store.containers(true).await?;
        for row in rows
            .into_iter()
            .filter(|r| r.status == ContainerStatus::Running)
        {
            match self.node.process_state(&row.id) {
                ProcessState::Exited(exit) => {
                    let (status, reason) = if exit.oom_killed {
                        (
                            ContainerStatus::OomKilled,
                            format!(
                                "killed for exceeding its {} MiB memory limit",
                                row.memory_mib
                            ),
                        )
                    } else {
                        (
                            ContainerStatus::Exited,
                            format!("the entrypoint exited with code {}", exit.exit_code),
                        )
                    };
                    self.spawn_finish(row.id, status, Some(exit.exit_code), reason);
                }
                ProcessState::Lost => self.spawn_finish(
                    row.id,
                    ContainerStatus::Failed,
                    None,
                    "the container's monitor process (berth shim) is gone".into(),
                ),
                ProcessState::Running => self.check_idle(&row).await,
            }
        }
        Ok(())
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
        tokio::spawn(async move {
            this.teardown_and_record(&id, status, exit_code, Some(reason))
                .await;
            this.release(&id);
        });
    }

    /// Stops a container with no open connection whose keep-warm deadline passed.
    async fn check_idle(self: &Arc<Self>, row: &ContainerRow) {
        if row.keep_warm_seconds < 0 {
            return;
        }
        let activity = self.activities_lock().get(&row.id).cloned();
        let (open, last_ms) = match &activity {
            Some(a) => (a.open_connections(), a.last_active_ms()),
            None => (0, None),
        };
        if open > 0 {
            return;
        }
        let since_ms = last_ms
            .unwrap_or(0)
            .max(row.started_at.unwrap_or(row.scheduled_at) * 1000);
        if now_ms() - since_ms < row.keep_warm_seconds * 1000 {
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
            let id = row.id.clone();
            tokio::spawn(async move { this.stop_and_finish(id, None).await });
        }
    }

    /// After a server restart: adopt running containers, finish interrupted stops, and undo
    /// starts that were cut off half-way.
    pub async fn recover(self: &Arc<Self>) -> Result<(), LifecycleError> {
        for row in self.store.containers(true).await? {
            match row.status {
                ContainerStatus::Running => {
                    // Exits that happened meanwhile are recorded by the monitor's first pass.
                    if self.node.process_state(&row.id) == ProcessState::Running {
                        tracing::info!(container = %row.id, "adopted running container");
                        self.add_route(&row);
                        if let Some(activity) = self.activities_lock().get(&row.id) {
                            activity.touch();
                        }
                    }
                }
                ContainerStatus::Stopping => {
                    let this = self.clone();
                    tokio::spawn(async move { this.stop_and_finish(row.id, None).await });
                }
                _ => {
                    let id = row.id.clone();
                    let _ = self.node.teardown(&id).await;
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

    pub async fn get(&self, id: &str) -> Result<Option<Container>, LifecycleError> {
        Ok(self.store.container(id).await?.map(|row| self.view(row)))
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

    /// Open ingress connections per running container.
    pub fn open_connections(&self) -> usize {
        self.activities_lock()
            .values()
            .map(|a| a.open_connections())
            .sum()
    }

    pub fn url(&self, stub_id: &str, port: u16) -> String {
        let suffix = match self.config.url_port {
            80 => String::new(),
            p => format!(":{p}"),
        };
        format!("http://{stub_id}-{port}.{}{suffix}", self.config.domain)
    }

    fn view(&self, row: ContainerRow) -> Container {
        let progress = self
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&row.id)
            .cloned();
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{NodeError, ProgressFn};
    use berth_runtime::ExitRecord;
    use std::path::PathBuf;

    /// A node that runs nothing: tests drive its processes' fate by hand.
    #[derive(Default)]
    struct FakeNode {
        fail_pull: bool,
        states: Mutex<HashMap<String, ProcessState>>,
        teardowns: Mutex<Vec<String>>,
    }

    fn exited(code: i32, oom: bool) -> ProcessState {
        ProcessState::Exited(ExitRecord {
            exit_code: code,
            signal: None,
            oom_killed: oom,
            finished_at: 0,
        })
    }

    impl Node for Arc<FakeNode> {
        type Image = ();

        async fn pull(&self, spec: &PodSpec, progress: ProgressFn) -> Result<(), NodeError> {
            progress(format!("Pulling image {}: 0/1 layers", spec.image_name()));
            if self.fail_pull {
                return Err(NodeError::Io(format!(
                    "image {} not found",
                    spec.image_name()
                )));
            }
            Ok(())
        }

        async fn start(&self, req: StartRequest, _image: ()) -> Result<Started, NodeError> {
            self.states
                .lock()
                .expect("lock")
                .insert(req.id, ProcessState::Running);
            Ok(Started {
                image: req.spec.image_name(),
                ports: if req.spec.ports.is_empty() {
                    vec![80]
                } else {
                    req.spec.ports
                },
                addrs: vec!["10.0.0.2".parse().expect("ip")],
            })
        }

        async fn stop(&self, id: &str, _grace: Duration) -> ProcessState {
            let state = exited(143, false);
            self.states
                .lock()
                .expect("lock")
                .insert(id.to_string(), state);
            state
        }

        async fn teardown(&self, id: &str) -> Result<(), NodeError> {
            self.teardowns.lock().expect("lock").push(id.to_string());
            Ok(())
        }

        fn process_state(&self, id: &str) -> ProcessState {
            *self
                .states
                .lock()
                .expect("lock")
                .get(id)
                .unwrap_or(&ProcessState::Lost)
        }

        fn log_path(&self, _id: &str) -> PathBuf {
            PathBuf::from("/dev/null")
        }

        async fn build(
            &self,
            _spec: berth_api::ImageSpec,
            _push: Option<String>,
            _log: ProgressFn,
            _cancelled: Arc<std::sync::atomic::AtomicBool>,
        ) -> Result<crate::node::BuiltImage, NodeError> {
            Err(NodeError::Io("the fake node builds nothing".into()))
        }

        fn images(&self) -> Vec<berth_api::ImageSummary> {
            Vec::new()
        }

        fn prune(&self, _keep: HashSet<String>) -> berth_api::PruneResult {
            berth_api::PruneResult {
                removed_images: Vec::new(),
                removed_layers: 0,
                freed_bytes: 0,
            }
        }
    }

    struct Harness {
        _dir: tempfile::TempDir,
        node: Arc<FakeNode>,
        routes: Arc<RouteTable>,
        lifecycle: Arc<Lifecycle<Arc<FakeNode>>>,
    }

    async fn harness(node: FakeNode) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db")).await.expect("store");
        let node = Arc::new(node);
        let routes = Arc::new(RouteTable::new());
        let lifecycle = Lifecycle::new(
            store,
            node.clone(),
            routes.clone(),
            LifecycleConfig {
                domain: "example.test".into(),
                url_port: 80,
                stop_grace: Duration::from_secs(1),
            },
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
        }
    }

    async fn wait_for(h: &Harness, id: &str, status: ContainerStatus) -> Container {
        for _ in 0..200 {
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
        assert!(h.routes.lookup(&c.stub_id, 8080).is_some());

        h.lifecycle.stop(&c.id, None).await.expect("stop");
        let done = wait_for(&h, &c.id, ContainerStatus::Stopped).await;
        assert_eq!(done.exit_code, Some(143));
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
    async fn exits_and_oom_kills_are_recorded_by_the_monitor() {
        let h = harness(FakeNode::default()).await;
        let a = h.lifecycle.create(spec(-1)).await.expect("create");
        let b = h.lifecycle.create(spec(-1)).await.expect("create");
        wait_for(&h, &a.id, ContainerStatus::Running).await;
        wait_for(&h, &b.id, ContainerStatus::Running).await;
        h.node
            .states
            .lock()
            .expect("lock")
            .insert(a.id.clone(), exited(7, false));
        h.node
            .states
            .lock()
            .expect("lock")
            .insert(b.id.clone(), exited(137, true));
        h.lifecycle.check_running().await.expect("check");
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
        h.lifecycle.check_running().await.expect("check");
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
        h.lifecycle.check_running().await.expect("check");
        wait_for(&h, &busy.id, ContainerStatus::Stopped).await;
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
        assert_eq!(failed.reason.as_deref(), Some("image img not found"));
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
        );
        // A scale-to-zero pod up longer than its keep-warm period before the restart.
        let warm = h.lifecycle.create(spec(1)).await.expect("create");
        wait_for(&h, &warm.id, ContainerStatus::Running).await;
        tokio::time::sleep(Duration::from_millis(2100)).await;

        fresh.recover().await.expect("recover");
        fresh.check_running().await.expect("check");
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
}
