//! Deployments: a name whose URL (`<name>-<port>.<domain>`) outlives its versions.
//!
//! - A deploy adds a version and starts its container; the version becomes the one served
//!   only once its port accepts connections, and only then are the previous version's
//!   containers drained and stopped, so a switch fails no request.
//! - A request for a deployment with no running container wakes it: exactly one container
//!   starts however many requests arrive at once, and the requests wait (bounded) until its
//!   port accepts, then go through; past the limit they get 503 with Retry-After.
//! - Idle containers stop through the lifecycle's keep-warm rule like any pod; the
//!   deployment stays and wakes again on the next request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api::{
    ApiError, ContainerStatus, DeployRequest, DeployResponse, Deployment, DeploymentStatus,
    DeploymentVersion, VersionStatus,
};
use berth_proxy::{MissOutcome, PodHost, Route, RouteMiss, RouteTable};
use futures_util::future::BoxFuture;
use futures_util::FutureExt;

use crate::lifecycle::{Lifecycle, LifecycleError};
use crate::node::{LogStream, Node};
use crate::readiness;
use crate::spec::PodSpec;
use crate::store::{ContainerRow, DeploymentRow, Store, StoreError, VersionRow};

/// How often a starting container is checked for readiness.
const READY_POLL: Duration = Duration::from_millis(50);
/// How long a replaced version's open connections may take to finish before it stops.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// What a 503 tells clients to wait before retrying a wake.
const RETRY_AFTER_SECONDS: u32 = 5;
/// Longest name: a DNS label (63) less the `-<port>` suffix of the URL.
const MAX_NAME_LEN: usize = 57;

#[derive(Debug, Clone)]
pub struct DeployConfig {
    /// How long a request that wakes a deployment waits for its port.
    pub wake_limit: Duration,
    /// How long a new version has to answer (pull and build included) before it fails.
    pub deploy_limit: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{0}")]
    Invalid(ApiError),
    #[error("no deployment named {0}")]
    NotFound(String),
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a container did not become ready.
enum NotReady {
    Ended(String),
    TimedOut,
    /// The container does not serve the port asked for.
    NoSuchPort,
}

pub struct Deployments<N: Node> {
    lifecycle: Arc<Lifecycle<N>>,
    store: Store,
    routes: Arc<RouteTable>,
    config: DeployConfig,
    /// One lock per deployment name, so concurrent wakes start one container.
    waking: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A deployment name: a DNS label short enough for `<name>-<port>`, and not shaped like a
/// stub id (those hosts belong to pods).
pub fn validate_name(name: &str) -> Result<(), ApiError> {
    let label = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !label {
        return Err(ApiError::invalid(
            "name",
            format!(
                "{name:?} is not a valid deployment name: use lower-case letters, digits and '-' \
                 (a DNS label of at most {MAX_NAME_LEN} characters, like \"my-app\"), since it \
                 becomes the URL <name>-<port>.<domain>"
            ),
        ));
    }
    let parts: Vec<&str> = name.split('-').collect();
    let uuid_like = parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts
            .iter()
            .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()));
    if uuid_like {
        return Err(ApiError::invalid(
            "name",
            format!("{name:?} is shaped like a pod's stub id; pick another name"),
        ));
    }
    Ok(())
}

impl<N: Node> Deployments<N> {
    pub fn new(
        lifecycle: Arc<Lifecycle<N>>,
        store: Store,
        routes: Arc<RouteTable>,
        config: DeployConfig,
    ) -> Arc<Self> {
        Arc::new(Deployments {
            lifecycle,
            store,
            routes,
            config,
            waking: Mutex::default(),
        })
    }

    /// Adds a version and starts its first container; it takes over once it answers.
    pub async fn deploy(
        self: &Arc<Self>,
        req: DeployRequest,
    ) -> Result<DeployResponse, DeployError> {
        validate_name(&req.name).map_err(DeployError::Invalid)?;
        let spec = PodSpec::validate(req.pod).map_err(|e| {
            DeployError::Invalid(ApiError::new(
                e.error.code,
                format!("pod.{}", e.error.message),
            ))
        })?;
        // Everything the spec names must exist before anything is recorded.
        self.lifecycle.check_references(&spec).await?;
        let stub_id = spec.stub_id().map_err(|e| StoreError::Corrupt {
            what: "pod spec",
            detail: e.to_string(),
        })?;
        self.store.upsert_stub(&stub_id, &spec, now()).await?;
        let version = self.store.add_version(&req.name, &stub_id, now()).await?;
        let container = match self
            .lifecycle
            .create_owned(spec, Some(version.id.clone()))
            .await
        {
            Ok(c) => c,
            Err(e) => {
                self.store.fail_version(&version.id, &e.to_string()).await?;
                return Err(e.into());
            }
        };
        self.store
            .set_version_container(&version.id, &container.id)
            .await?;
        tracing::info!(deployment = %req.name, version = version.version, container = %container.id, "deploying");
        let this = self.clone();
        let (v, id) = (version.clone(), container.id.clone());
        tokio::spawn(async move { this.activate(v, id).await });
        let deployment = self
            .get(&req.name)
            .await?
            .ok_or_else(|| DeployError::NotFound(req.name.clone()))?;
        let version = deployment
            .versions
            .iter()
            .find(|v| v.id == version.id)
            .cloned()
            .ok_or_else(|| DeployError::NotFound(version.id.clone()))?;
        Ok(DeployResponse {
            deployment,
            version,
            container,
        })
    }

    /// Waits for the version's container to answer, then makes it the one served and
    /// retires the others.
    async fn activate(self: Arc<Self>, version: VersionRow, container_id: String) {
        match self
            .wait_ready(&container_id, None, self.config.deploy_limit)
            .await
        {
            Ok(route) => {
                if let Err(e) = self.take_over(&version, route).await {
                    tracing::warn!(deployment = %version.name, "activating v{}: {e}", version.version);
                }
            }
            Err(why) => {
                let reason = match why {
                    NotReady::Ended(reason) => reason,
                    NotReady::TimedOut => format!(
                        "it did not answer within {} s",
                        self.config.deploy_limit.as_secs()
                    ),
                    NotReady::NoSuchPort => "it serves no port".into(),
                };
                tracing::warn!(deployment = %version.name, "v{} failed: {reason}", version.version);
                let _ = self.store.fail_version(&version.id, &reason).await;
                let _ = self.lifecycle.stop(&container_id, None).await;
            }
        }
    }

    async fn take_over(&self, version: &VersionRow, route: Route) -> Result<(), DeployError> {
        let name = &version.name;
        let current = self.store.deployment(name).await?;
        // A later version already took over while this one started: step aside.
        if current
            .as_ref()
            .and_then(|d| d.active_version)
            .is_some_and(|active| active > version.version)
        {
            self.store
                .fail_version(&version.id, "a later version was deployed first")
                .await?;
            self.lifecycle.stop(&route.container_id, None).await?;
            return Ok(());
        }
        self.store.activate_version(name, version.version).await?;
        self.routes.insert(name, route);
        tracing::info!(deployment = %name, "v{} is serving", version.version);
        for old in self.store.deployment_containers(name).await? {
            if old.deployment_id.as_deref() != Some(version.id.as_str()) {
                self.retire(name, old).await;
            }
        }
        Ok(())
    }

    /// Lets the old container finish the requests it holds, then stops it.
    async fn retire(&self, name: &str, old: ContainerRow) {
        if let Some(route) = self.lifecycle.route_of(&old.id).await {
            let deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
            while route.activity.open_connections() > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(READY_POLL).await;
            }
        }
        tracing::info!(deployment = %name, container = %old.id, "retiring the replaced version");
        if let Err(e) = self.lifecycle.stop(&old.id, None).await {
            tracing::warn!(container = %old.id, "stopping a replaced container: {e}");
        }
    }

    /// Waits until the container runs and `port` (its first port when `None`) accepts a
    /// connection.
    async fn wait_ready(
        &self,
        container_id: &str,
        port: Option<u16>,
        limit: Duration,
    ) -> Result<Route, NotReady> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let container = self
                .lifecycle
                .get(container_id)
                .await
                .ok()
                .flatten()
                .ok_or_else(|| NotReady::Ended("its container is gone".into()))?;
            if container.status.is_terminal() || container.status == ContainerStatus::Stopping {
                let reason = container
                    .reason
                    .unwrap_or_else(|| format!("its container is {}", container.status));
                return Err(NotReady::Ended(reason));
            }
            // Ports are known from the spec before it runs (from EXPOSE only once it runs).
            if port.is_some_and(|p| !container.ports.is_empty() && !container.ports.contains(&p)) {
                return Err(NotReady::NoSuchPort);
            }
            // Armed before the lookup: a route added after it still wakes us at once.
            let inserted = self.routes.inserted();
            tokio::pin!(inserted);
            inserted.as_mut().enable();
            if container.status == ContainerStatus::Running {
                if let Some(route) = self.lifecycle.route_of(container_id).await {
                    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                    match port.or_else(|| route.ports.first().copied()) {
                        None => return Ok(route),
                        Some(p) if readiness::until_accepting(&route, p, left).await => {
                            return Ok(route)
                        }
                        Some(_) => {}
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(NotReady::TimedOut);
            }
            // The container's route, or a while to look at its row again.
            let _ = tokio::time::timeout(READY_POLL, inserted).await;
        }
    }

    /// Finds or starts the container serving the deployment, and waits for `pod.port`.
    async fn wake(&self, dep: DeploymentRow, pod: &PodHost) -> MissOutcome {
        let name = &dep.name;
        let container_id = {
            let lock = self.lock_for(name);
            let _held = lock.lock().await;
            if let Some(route) = self.routes.lookup(name, pod.port) {
                return MissOutcome::Route(route);
            }
            match self.container_to_wait_for(name).await {
                Ok(Some(id)) => id,
                Ok(None) => return MissOutcome::NotFound,
                Err(e) => {
                    tracing::warn!(deployment = %name, "waking: {e}");
                    return unavailable(format!("deployment {name} could not be started: {e}"));
                }
            }
        };
        match self
            .wait_ready(&container_id, Some(pod.port), self.config.wake_limit)
            .await
        {
            Ok(route) if route.ports.contains(&pod.port) => {
                self.routes.insert(name, route.clone());
                MissOutcome::Route(Arc::new(route))
            }
            Ok(_) | Err(NotReady::NoSuchPort) => MissOutcome::NotFound,
            Err(NotReady::TimedOut) => unavailable(format!(
                "deployment {name} is still starting after {} s; retry shortly",
                self.config.wake_limit.as_secs()
            )),
            Err(NotReady::Ended(reason)) => {
                unavailable(format!("deployment {name} could not start: {reason}"))
            }
        }
    }

    /// The live container of the served version, starting one if there is none. Called
    /// under the deployment's wake lock. `None` if nothing is to be served.
    async fn container_to_wait_for(&self, name: &str) -> Result<Option<String>, DeployError> {
        let Some(dep) = self.store.deployment(name).await? else {
            return Ok(None);
        };
        if dep.status != DeploymentStatus::Active {
            return Ok(None);
        }
        let versions = self.store.versions(name).await?;
        let live = self.store.deployment_containers(name).await?;
        // The served version's container; before any version answered, the deploying one.
        let wanted = match dep.active_version {
            Some(v) => versions.iter().find(|r| r.version == v),
            None => versions
                .iter()
                .find(|r| r.status == VersionStatus::Deploying),
        };
        let Some(version) = wanted else {
            return Ok(None);
        };
        // A container on its way out (idle stop) is not waited for: a new one starts.
        if let Some(c) = live.iter().find(|c| {
            c.deployment_id.as_deref() == Some(version.id.as_str())
                && c.status != ContainerStatus::Stopping
        }) {
            return Ok(Some(c.id.clone()));
        }
        if dep.active_version.is_none() {
            return Ok(None);
        }
        let spec = self
            .store
            .stub_spec(&version.stub_id)
            .await?
            .ok_or_else(|| DeployError::NotFound(version.stub_id.clone()))?;
        let container = self
            .lifecycle
            .create_owned(spec, Some(version.id.clone()))
            .await?;
        tracing::info!(deployment = %name, container = %container.id, "woken by a request");
        Ok(Some(container.id))
    }

    fn lock_for(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.waking
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    pub async fn get(&self, name: &str) -> Result<Option<Deployment>, DeployError> {
        match self.store.deployment(name).await? {
            Some(row) => Ok(Some(self.view(row).await?)),
            None => Ok(None),
        }
    }

    pub async fn list(&self) -> Result<Vec<Deployment>, DeployError> {
        let mut out = Vec::new();
        for row in self.store.deployments().await? {
            out.push(self.view(row).await?);
        }
        Ok(out)
    }

    /// Stops every container of the deployment; requests get 404 until the next deploy.
    pub async fn stop(&self, name: &str) -> Result<Deployment, DeployError> {
        let lock = self.lock_for(name);
        let _held = lock.lock().await;
        if !self
            .store
            .set_deployment_status(name, DeploymentStatus::Stopped)
            .await?
        {
            return Err(DeployError::NotFound(name.to_string()));
        }
        self.stop_containers(name).await?;
        self.get(name)
            .await?
            .ok_or_else(|| DeployError::NotFound(name.to_string()))
    }

    /// Stops the deployment and forgets it and its versions.
    pub async fn delete(&self, name: &str) -> Result<(), DeployError> {
        self.stop(name).await?;
        self.store.delete_deployment(name).await?;
        Ok(())
    }

    async fn stop_containers(&self, name: &str) -> Result<(), DeployError> {
        for c in self.store.deployment_containers(name).await? {
            self.lifecycle.stop(&c.id, None).await?;
        }
        Ok(())
    }

    /// The log of the deployment's newest container.
    pub async fn logs(&self, name: &str, follow: bool) -> Result<LogStream, DeployError> {
        let versions = self.store.versions(name).await?;
        if versions.is_empty() {
            return Err(DeployError::NotFound(name.to_string()));
        }
        let live = self.store.deployment_containers(name).await?;
        let id = live
            .first()
            .map(|c| c.id.clone())
            .or_else(|| versions.iter().find_map(|v| v.container_id.clone()))
            .ok_or_else(|| DeployError::NotFound(name.to_string()))?;
        Ok(self.lifecycle.logs(&id, follow).await?)
    }

    /// After a restart: versions cut off mid-deploy resume waiting, or fail if their
    /// container is gone.
    pub async fn recover(self: &Arc<Self>) -> Result<(), DeployError> {
        for dep in self.store.deployments().await? {
            let live = self.store.deployment_containers(&dep.name).await?;
            for version in self.store.versions(&dep.name).await? {
                if version.status != VersionStatus::Deploying {
                    continue;
                }
                let container = version
                    .container_id
                    .clone()
                    .filter(|id| live.iter().any(|c| &c.id == id));
                match container {
                    Some(id) => {
                        let this = self.clone();
                        tokio::spawn(async move { this.activate(version, id).await });
                    }
                    None => {
                        self.store
                            .fail_version(&version.id, "the server restarted during the deploy")
                            .await?
                    }
                }
            }
        }
        Ok(())
    }

    async fn view(&self, row: DeploymentRow) -> Result<Deployment, DeployError> {
        let versions = self.store.versions(&row.name).await?;
        let live = self.store.deployment_containers(&row.name).await?;
        let served = versions
            .iter()
            .find(|v| Some(v.version) == row.active_version)
            .or_else(|| versions.first());
        let mut ports = match served {
            Some(v) => self
                .store
                .stub_spec(&v.stub_id)
                .await?
                .map(|s| s.ports)
                .unwrap_or_default(),
            None => Vec::new(),
        };
        if ports.is_empty() {
            // The image's EXPOSE ports, as its containers serve them.
            if let Some(c) = live.first() {
                ports = c.ports.clone();
            }
        }
        Ok(Deployment {
            urls: ports
                .iter()
                .map(|p| self.lifecycle.url(&row.name, *p))
                .collect(),
            ports,
            containers: live.into_iter().map(|c| c.id).collect(),
            versions: versions.into_iter().map(version_view).collect(),
            name: row.name,
            status: row.status,
            version: row.active_version,
            created_at: row.created_at,
        })
    }
}

fn version_view(v: VersionRow) -> DeploymentVersion {
    DeploymentVersion {
        id: v.id,
        name: v.name,
        version: v.version,
        status: v.status,
        reason: v.reason,
        container_id: v.container_id,
        created_at: v.created_at,
    }
}

fn unavailable(message: String) -> MissOutcome {
    MissOutcome::Unavailable {
        message,
        retry_after_seconds: RETRY_AFTER_SECONDS,
    }
}

/// The ingress asks here for a pod host with no route: a deployment's name wakes it; a
/// stub id waits for its pod if that is still starting.
impl<N: Node> RouteMiss for Deployments<N> {
    fn route_miss<'a>(&'a self, pod: &'a PodHost) -> BoxFuture<'a, MissOutcome> {
        async move {
            match self.store.deployment(&pod.stub_id).await {
                Ok(Some(dep)) => self.wake(dep, pod).await,
                Ok(None) => match self.lifecycle.route_when_started(pod).await {
                    Some(route) => MissOutcome::Route(route),
                    None => MissOutcome::NotFound,
                },
                Err(e) => {
                    tracing::warn!("looking up a deployment: {e}");
                    MissOutcome::NotFound
                }
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels_and_not_stub_ids() {
        for good in ["my-deployed-pod", "a", "web2", &"a".repeat(57)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "My-App",
            "-web",
            "web-",
            "web_app",
            "web.app",
            &"a".repeat(58),
            "2929b184-b445-4f23-abc6-7c4b151001da",
        ] {
            let err = validate_name(bad).expect_err(bad);
            assert!(err.error.message.starts_with("name: "), "{err}");
        }
    }
}
