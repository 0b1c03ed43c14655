//! The node on this machine: pulls and builds images into the local store, starts pods
//! through the shared sandbox path and a `berth-shim` each, and watches the shims for ends.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use berth_api::{CodeUploaded, ImageSource, ImageSummary, PruneResult, Volume};
use berth_image::{parse_reference, ImageConfig, PullProgress, Puller};
use berth_net::Network;
use berth_runtime::shim::{self, ShimConfig};
use berth_runtime::{
    hostname_for, BindMount, OciRuntime, ProcessPlan, ResourceLimits, RuntimeKind, ShimFiles,
    Signal,
};
use bytes::Bytes;

use super::build::Builder;
use super::code::CodeStore;
use super::dns::Resolvers;
use super::dockerfile::DockerfileBuilder;
use super::runtimes::Runtimes;
use super::sandboxes::{SandboxRequest, Sandboxes};
use super::volumes::Volumes;
use super::watch::{current_state, ExitWatcher};
use super::{
    BuildImage, BuiltImage, LogStream, MountSource, Node, NodeError, NodeEvent, PreparedImage,
    ProcessState, ProgressFn, StartContainer, Started, StopPath, Stopped,
};

/// Default pids limit per pod: enough for real apps, stops fork bombs.
pub const DEFAULT_PIDS_LIMIT: i64 = 4096;

/// How long a container has to go after SIGKILL before it counts as lost.
const KILL_WAIT: Duration = Duration::from_secs(10);

pub struct LocalNodeConfig {
    pub containers_dir: PathBuf,
    pub puller: Puller,
    pub network: Network,
    pub runtime: OciRuntime,
    /// The berth-shim binary, one running per container.
    pub shim_exe: PathBuf,
    /// The berth binary, run as `berth env-runtime` by Dockerfile builds.
    pub berth_exe: PathBuf,
    /// The CA bundle build steps trust; `None` leaves the image's own.
    pub build_ca: Option<PathBuf>,
    /// Resolvers for pods (`--dns`); empty to follow the host.
    pub dns: Vec<IpAddr>,
    /// Unpacked code uploads, by digest.
    pub code_dir: PathBuf,
    /// The most bytes an upload may unpack to.
    pub max_code_bytes: u64,
    pub volumes_dir: PathBuf,
    /// Filter runc pods' syscalls with the default seccomp profile.
    pub seccomp: bool,
    /// Conda repodata and packages fetched for builds.
    pub conda_cache: PathBuf,
    /// buildah's storage, layer cache and configuration, for Dockerfile builds.
    pub buildah_dir: PathBuf,
    /// A static init (tini) mounted into pods as PID 1; `None` runs every pod without one.
    pub init_binary: Option<PathBuf>,
    /// Pod networks kept ready ahead of creates (`--warm-networks`).
    pub warm_networks: usize,
    /// A container's log rotates past this size (`--container-log-max-mib`).
    pub log_max_bytes: u64,
    /// How long an ended container's log is kept; `None` keeps it for ever.
    pub log_retention: Option<std::time::Duration>,
}

pub struct LocalNode {
    puller: Arc<Puller>,
    sandboxes: Arc<Sandboxes>,
    builder: Arc<Builder>,
    watcher: ExitWatcher,
    shim_exe: PathBuf,
    code: Arc<CodeStore>,
    volumes: Arc<Volumes>,
    init_binary: Option<PathBuf>,
    log_max_bytes: u64,
}

impl LocalNode {
    /// Opens the node and watches the shims of containers that outlived a previous server.
    /// Needs a Tokio runtime.
    pub fn new(config: LocalNodeConfig) -> Result<Arc<Self>, NodeError> {
        let puller = Arc::new(config.puller);
        let sandboxes = Arc::new(Sandboxes::new(
            config.containers_dir,
            config.network,
            Runtimes::new(
                config.runtime.clone(),
                config.runtime.root().parent().unwrap_or(Path::new("/")),
            ),
            Resolvers::new(config.dns),
            config.seccomp,
            config.warm_networks,
        )?);
        let code = Arc::new(CodeStore::new(config.code_dir, config.max_code_bytes)?);
        let dockerfile = DockerfileBuilder::new(
            puller.store().clone(),
            sandboxes.clone(),
            code.clone(),
            config.buildah_dir,
            puller.options().clone(),
            config.build_ca.clone(),
            config.berth_exe,
        )?;
        let builder = Arc::new(Builder::new(
            puller.clone(),
            sandboxes.clone(),
            config.build_ca,
            berth_conda::Conda::new(config.conda_cache)?,
            dockerfile,
        ));
        builder.clean_interrupted();
        let node = Arc::new(LocalNode {
            puller,
            sandboxes,
            builder,
            watcher: ExitWatcher::new(),
            shim_exe: config.shim_exe,
            code,
            volumes: Arc::new(Volumes::new(config.volumes_dir)?),
            init_binary: config.init_binary,
            log_max_bytes: config.log_max_bytes,
        });
        node.watch_surviving_shims();
        node.sandboxes.start_warming()?;
        if let Some(retention) = config.log_retention {
            node.sweep_ended_logs(retention);
        }
        Ok(node)
    }

    fn files(&self, id: &str) -> ShimFiles {
        ShimFiles::new(self.sandboxes.dir(id).path())
    }

    fn watch_surviving_shims(&self) {
        let Ok(entries) = std::fs::read_dir(self.sandboxes.containers_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            let files = ShimFiles::new(entry.path());
            if files.shim_alive() {
                self.watcher.watch(&id, files);
            }
        }
    }

    /// Removes ended containers' logs past `retention`, a minute after start and then every
    /// hour, for as long as the runtime runs.
    fn sweep_ended_logs(&self, retention: std::time::Duration) {
        let dir = self.sandboxes.containers_dir().to_path_buf();
        tokio::spawn(async move {
            // Not at once: recovery reads the exit records of pods that ended while the
            // server was down.
            let first = tokio::time::Instant::now() + super::retention::FIRST_SWEEP;
            let mut every = tokio::time::interval_at(first, super::retention::SWEEP_EVERY);
            loop {
                every.tick().await;
                let dir = dir.clone();
                let now = std::time::SystemTime::now();
                let removed = tokio::task::spawn_blocking(move || {
                    super::retention::prune_ended(&dir, retention, now)
                })
                .await
                .unwrap_or(0);
                if removed > 0 {
                    tracing::info!(
                        "removed the logs of {removed} containers ended over {retention:?} ago"
                    );
                }
            }
        });
    }

    /// On a clean shutdown with no pod left: see [`Sandboxes::release_host_resources`].
    pub fn release_host_resources(&self) {
        self.sandboxes.release_host_resources();
    }

    /// The blocking half of a start: sandbox, then shim.
    fn start_blocking(&self, req: &StartContainer) -> Result<Started, NodeError> {
        let image = self
            .puller
            .store()
            .lookup(&req.image.reference)
            .ok_or_else(|| NodeError::ImageNotPrepared(req.image.reference.clone()))?;
        let config = &image.config;
        let id = &req.container_id;
        let mut args = command(req, config)?;
        let mut binds = self.binds(req)?;
        let init = match &self.init_binary {
            Some(binary) if req.init && !is_init(&args[0]) => {
                binds.push(BindMount {
                    source: binary.clone(),
                    destination: INIT_PATH.into(),
                    read_only: true,
                });
                args = with_init(args);
                true
            }
            _ => false,
        };
        let stop_signal = stop_signal(req, config);
        let prepared = self.sandboxes.prepare(
            id,
            SandboxRequest {
                layers: self.puller.store().layer_dirs(&image),
                upper: None,
                hostname: hostname_for(id),
                process: ProcessPlan {
                    args,
                    env: environment(req, config),
                    cwd: req
                        .workdir
                        .clone()
                        .or_else(|| config.working_dir.clone())
                        .unwrap_or_else(|| "/".into()),
                    user: config.user.clone(),
                },
                limits: ResourceLimits {
                    cpu_millis: req.cpu_millis,
                    memory_mib: req.memory_mib,
                    pids: DEFAULT_PIDS_LIMIT,
                },
                binds,
                runtime: req.runtime,
                egress: req.egress.clone(),
                read_only_rootfs: req.read_only_rootfs,
                disk_mib: req.disk_mib,
                user_namespace: !req.privileged_user,
            },
        )?;
        let runtime = &prepared.runtime;
        let shim_config = ShimConfig {
            id: id.clone(),
            bundle: prepared.dir.bundle(),
            dir: prepared.dir.path().to_path_buf(),
            runtime: runtime.kind(),
            runtime_binary: runtime.binary().to_path_buf(),
            runtime_root: runtime.root().to_path_buf(),
            cgroups_path: Sandboxes::cgroups_path(id),
            log_max_bytes: self.log_max_bytes,
        };
        let launching = std::time::Instant::now();
        if let Err(error) = shim::launch(&self.shim_exe, &shim_config) {
            // The sandbox is whole; a shim that failed leaves it (and runtime state) behind.
            return Err(match self.sandboxes.remove(id) {
                Ok(()) => error.into(),
                Err(cleanup) => NodeError::WithCleanup {
                    action: "starting the container".into(),
                    error: Box::new(error.into()),
                    cleanup: Box::new(cleanup),
                },
            });
        }
        let ports = if req.ports.is_empty() {
            config.exposed_ports.clone()
        } else {
            req.ports.clone()
        };
        let mut started = Started {
            ports,
            ipv4: None,
            ipv6: None,
            init,
            stop_signal: stop_signal.as_str().to_string(),
            phases: vec![
                ("network".into(), prepared.network_took),
                ("rootfs".into(), prepared.rootfs_took),
                ("runtime".into(), launching.elapsed()),
            ],
        };
        for addr in prepared.addrs {
            match addr {
                IpAddr::V4(a) => started.ipv4 = Some(a),
                IpAddr::V6(a) => started.ipv6 = Some(a),
            }
        }
        Ok(started)
    }

    /// Where each of the pod's mounts comes from on this machine.
    fn binds(&self, req: &StartContainer) -> Result<Vec<BindMount>, NodeError> {
        req.mounts
            .iter()
            .map(|m| {
                let (source, read_only) = match &m.source {
                    MountSource::Code(digest) => (
                        self.code
                            .path(digest)
                            .ok_or_else(|| NodeError::CodeMissing(digest.clone()))?,
                        true,
                    ),
                    MountSource::Volume(name) => (self.volumes.ensure(name)?, false),
                };
                Ok(BindMount {
                    source,
                    destination: m.target.clone(),
                    read_only,
                })
            })
            .collect()
    }

    async fn signal(self: &Arc<Self>, id: &str, signal: Signal, all: bool) {
        let node = self.clone();
        let id = id.to_string();
        let _ = tokio::task::spawn_blocking(move || {
            node.sandboxes.runtime_of(&id).kill(&id, signal, all)
        })
        .await;
    }

    /// Waits up to `limit` for the container to end; `None` if it still runs.
    async fn wait_ended(&self, id: &str, limit: Duration) -> Option<ProcessState> {
        let mut state = self.watcher.state(id)?;
        let ended =
            tokio::time::timeout(limit, state.wait_for(|s| *s != ProcessState::Running)).await;
        match ended {
            Ok(Ok(s)) => Some(*s),
            // The watch ended without a verdict: ask the files.
            Ok(Err(_)) => Some(current_state(&self.files(id))),
            Err(_) => None,
        }
    }
}

impl Node for Arc<LocalNode> {
    fn member(&self, _node_id: &str) -> Option<Self> {
        Some(self.clone())
    }

    async fn running_containers(&self) -> Result<Vec<String>, NodeError> {
        let dir = self.sandboxes.containers_dir().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                return Vec::new();
            };
            entries
                .flatten()
                .filter(|e| ShimFiles::new(e.path()).shim_alive())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .await
        .map_err(NodeError::task("listing containers"))
    }

    async fn prepare_image(
        &self,
        image: &ImageSource,
        progress: ProgressFn,
    ) -> Result<PreparedImage, NodeError> {
        let image = match image {
            ImageSource::Reference(name) => {
                let reference = parse_reference(name)?;
                let image_name = name.clone();
                let on_progress =
                    move |p: PullProgress| progress(format!("Pulling image {image_name}: {p}"));
                self.puller.resolve(&reference, &on_progress).await?
            }
            ImageSource::Spec(spec) => {
                let never = Arc::new(AtomicBool::new(false));
                self.builder.build(spec, progress, never).await?.0
            }
        };
        Ok(PreparedImage {
            reference: image.reference,
        })
    }

    async fn start(&self, req: StartContainer) -> Result<Started, NodeError> {
        let node = self.clone();
        let id = req.container_id.clone();
        let started = tokio::task::spawn_blocking(move || {
            // On error each step has undone itself: nothing of the container is left.
            let started = node.start_blocking(&req);
            node.sandboxes.refill_warm();
            started
        })
        .await
        .map_err(NodeError::task("the start"))??;
        self.watcher.watch(&id, self.files(&id));
        Ok(started)
    }

    async fn stop(&self, id: &str, signal: Signal, grace: Duration) -> Stopped {
        let state = current_state(&self.files(id));
        if state != ProcessState::Running {
            return Stopped {
                state,
                path: StopPath::Ended,
            };
        }
        // A container adopted or started by this node is watched; make sure of it.
        self.watcher.watch(id, self.files(id));
        // To PID 1 only: an init passes it on to the entrypoint's process group.
        self.signal(id, signal, false).await;
        if let Some(state) = self.wait_ended(id, grace).await {
            return Stopped {
                state,
                path: StopPath::Signal(signal.as_str().to_string()),
            };
        }
        tracing::info!(container = %id, "did not stop within {grace:?} of {signal}; sending SIGKILL");
        self.signal(id, Signal::SIGKILL, true).await;
        let state = self
            .wait_ended(id, KILL_WAIT)
            .await
            .unwrap_or(ProcessState::Lost);
        Stopped {
            state,
            path: StopPath::Killed {
                signal: signal.as_str().to_string(),
                grace_seconds: grace.as_secs(),
            },
        }
    }

    async fn teardown(&self, id: &str) -> Result<(), NodeError> {
        let node = self.clone();
        let owned = id.to_string();
        tokio::task::spawn_blocking(move || node.sandboxes.remove(&owned))
            .await
            .map_err(NodeError::task("the teardown"))??;
        self.watcher.forget(id);
        Ok(())
    }

    async fn state(&self, id: &str) -> ProcessState {
        let state = current_state(&self.files(id));
        if state == ProcessState::Running {
            self.watcher.watch(id, self.files(id));
        }
        state
    }

    fn events(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<NodeEvent>> {
        self.watcher.take_events()
    }

    async fn logs(&self, id: &str, follow: bool) -> Result<LogStream, NodeError> {
        Ok(super::logs::stream(self.files(id), follow))
    }

    async fn build(
        &self,
        req: BuildImage,
        log: ProgressFn,
        cancelled: Arc<AtomicBool>,
    ) -> Result<BuiltImage, NodeError> {
        let (image, cached) = self
            .builder
            .build(&req.spec, log.clone(), cancelled)
            .await?;
        if let Some(target) = req.push {
            let target = parse_reference(&target)?;
            log(format!("=> Pushing {}", target.whole()));
            let digest = self.puller.push(&image, &target, &*log).await?;
            log(format!("=> Pushed {}@{digest}", target.whole()));
        }
        Ok(BuiltImage {
            reference: image.reference,
            cached,
        })
    }

    async fn images(&self) -> Vec<ImageSummary> {
        let store = self.puller.store();
        store
            .images()
            .into_iter()
            .map(|image| ImageSummary {
                built: image.reference.starts_with("berth-build/")
                    || image.reference == berth_image::build::DEFAULT_BASE_REFERENCE,
                size_bytes: store.image_size(&image),
                layers: image.layer_digests.len(),
                digest: image.manifest_digest,
                reference: image.reference,
            })
            .collect()
    }

    async fn prune(&self, keep: HashSet<String>) -> PruneResult {
        // Prune waits for pulls and builds in progress; that wait belongs off the async threads.
        let puller = self.puller.clone();
        let pruned = tokio::task::spawn_blocking(move || {
            puller
                .store()
                .prune(&|image| keep.contains(&image.reference))
        })
        .await
        .unwrap_or_default();
        PruneResult {
            removed_images: pruned.removed_images,
            removed_layers: pruned.removed_layers,
            freed_bytes: pruned.freed_bytes,
        }
    }

    async fn put_code(&self, digest: String, archive: Bytes) -> Result<CodeUploaded, NodeError> {
        let code = self.code.clone();
        tokio::task::spawn_blocking(move || code.put(&digest, &archive))
            .await
            .map_err(NodeError::task("the code upload"))?
            .map_err(NodeError::from)
    }

    fn has_code(&self, digest: &str) -> bool {
        self.code.path(digest).is_some()
    }

    fn runtimes(&self) -> Vec<RuntimeKind> {
        self.sandboxes.runtimes().kinds()
    }

    async fn exec(
        &self,
        id: &str,
        exec: super::ExecCommand,
    ) -> Result<super::ExecStream, NodeError> {
        super::exec::spawn(self.sandboxes.runtime_of(id), id, exec)
    }

    async fn exec_tty(
        &self,
        id: &str,
        exec: super::ExecCommand,
        size: super::TtySize,
    ) -> Result<super::TtySession, NodeError> {
        super::tty::spawn(
            self.sandboxes.runtime_of(id),
            &self.sandboxes.dir(id),
            id,
            exec,
            size,
        )
    }

    async fn read_file(
        &self,
        id: &str,
        path: String,
        max: u64,
    ) -> Result<super::FileDownload, NodeError> {
        super::files::read(self.sandboxes.dir(id), path, max).await
    }

    async fn write_file(
        &self,
        id: &str,
        path: String,
        mode: u32,
        body: super::UploadBody,
        max: u64,
    ) -> Result<u64, NodeError> {
        super::files::write(self.sandboxes.dir(id), path, mode, body, max).await
    }

    async fn list_files(
        &self,
        id: &str,
        path: String,
    ) -> Result<berth_api::FileListing, NodeError> {
        super::files::list(self.sandboxes.dir(id), path).await
    }

    async fn make_dir(&self, id: &str, path: String, mode: u32) -> Result<bool, NodeError> {
        super::files::make_dir(self.sandboxes.dir(id), path, mode).await
    }

    async fn volumes(&self) -> Result<Vec<Volume>, NodeError> {
        let volumes = self.volumes.clone();
        tokio::task::spawn_blocking(move || volumes.list())
            .await
            .map_err(NodeError::task("listing volumes"))?
    }

    async fn delete_volume(&self, name: &str) -> Result<bool, NodeError> {
        let volumes = self.volumes.clone();
        let name = name.to_string();
        tokio::task::spawn_blocking(move || volumes.delete(&name))
            .await
            .map_err(NodeError::task("deleting a volume"))?
    }
}

/// The process to run: the pod's entrypoint, or the image's ENTRYPOINT + CMD.
fn command(req: &StartContainer, config: &ImageConfig) -> Result<Vec<String>, NodeError> {
    let args = match &req.entrypoint {
        Some(args) => args.clone(),
        None => config
            .entrypoint
            .iter()
            .chain(&config.cmd)
            .cloned()
            .collect(),
    };
    if args.is_empty() {
        return Err(NodeError::NoCommand {
            image: req.image.reference.clone(),
        });
    }
    Ok(args)
}

/// Where the init binary appears in a pod: beside the runtime's own files, out of the way
/// of the image's.
const INIT_PATH: &str = "/run/berth-init";

/// Programs that are an init already: an image that starts with one needs no second.
const KNOWN_INITS: [&str; 8] = [
    "tini",
    "tini-static",
    "dumb-init",
    "catatonit",
    "docker-init",
    "init",
    "s6-svscan",
    "runsvdir",
];

fn is_init(program: &str) -> bool {
    let name = program.rsplit('/').next().unwrap_or(program);
    KNOWN_INITS.contains(&name)
}

/// `tini -g -- args`: signals go to the entrypoint's whole process group, so a shell
/// script and the program it runs both get them.
fn with_init(args: Vec<String>) -> Vec<String> {
    [INIT_PATH, "-g", "--"]
        .into_iter()
        .map(String::from)
        .chain(args)
        .collect()
}

/// The pod's stop signal, else the image's STOPSIGNAL, else SIGTERM. An image's signal
/// berth cannot send (a realtime one like `SIGRTMIN+3`) falls back to SIGTERM.
fn stop_signal(req: &StartContainer, config: &ImageConfig) -> Signal {
    let from_pod = req
        .stop_signal
        .as_deref()
        .and_then(|name| berth_api::parse_stop_signal(name).ok());
    let from_image = || {
        let text = config.stop_signal.as_deref()?;
        berth_api::parse_stop_signal(text)
            .inspect_err(|e| {
                tracing::warn!(container = %req.container_id, "the image's STOPSIGNAL {text:?}: {e}; using SIGTERM")
            })
            .ok()
    };
    from_pod
        .or_else(from_image)
        .unwrap_or(berth_api::DEFAULT_STOP_SIGNAL)
}

/// Image env, then the user's env over it, then berth's own variables.
fn environment(req: &StartContainer, config: &ImageConfig) -> Vec<String> {
    let mut vars: Vec<(String, String)> = Vec::new();
    let set = |vars: &mut Vec<(String, String)>, k: &str, v: &str| {
        vars.retain(|(name, _)| name != k);
        vars.push((k.to_string(), v.to_string()));
    };
    set(&mut vars, "PATH", berth_api::DEFAULT_PATH);
    for entry in &config.env {
        let (k, v) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
        set(&mut vars, k, v);
    }
    for (k, v) in &req.env {
        set(&mut vars, k, v);
    }
    set(&mut vars, "BERTH_CONTAINER_ID", &req.container_id);
    set(&mut vars, "BERTH_STUB_ID", &req.stub_id);
    set(
        &mut vars,
        "KEEP_WARM_SECONDS",
        &req.keep_warm_seconds.to_string(),
    );
    if !vars.iter().any(|(k, _)| k == "HOME") {
        vars.push(("HOME".into(), "/root".into()));
    }
    vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(entrypoint: Option<Vec<&str>>) -> StartContainer {
        StartContainer {
            container_id: "pod-s-1".into(),
            stub_id: "s".into(),
            image: PreparedImage {
                reference: "img".into(),
            },
            entrypoint: entrypoint.map(|e| e.into_iter().map(String::from).collect()),
            env: [
                ("GREETING".to_string(), "hi".to_string()),
                ("PATH".to_string(), "/x".to_string()),
            ]
            .into_iter()
            .collect(),
            ports: vec![],
            cpu_millis: 1000,
            memory_mib: 128,
            keep_warm_seconds: 30,
            mounts: vec![],
            runtime: None,
            egress: berth_net::Egress::Open,
            workdir: None,
            read_only_rootfs: false,
            privileged_user: false,
            disk_mib: None,
            init: true,
            stop_signal: None,
        }
    }

    #[test]
    fn an_init_wraps_the_command_unless_the_image_brings_one() {
        assert_eq!(
            with_init(vec!["python3".into(), "app.py".into()]),
            [INIT_PATH, "-g", "--", "python3", "app.py"]
        );
        for own in [
            "tini",
            "/usr/bin/tini",
            "/usr/bin/dumb-init",
            "/init",
            "catatonit",
        ] {
            assert!(is_init(own), "{own}");
        }
        for app in ["python3", "/bin/sh", "/usr/sbin/httpd", "initdb"] {
            assert!(!is_init(app), "{app}");
        }
    }

    #[test]
    fn the_stop_signal_is_the_pods_then_the_images_then_sigterm() {
        let image = |signal: Option<&str>| ImageConfig {
            stop_signal: signal.map(String::from),
            ..ImageConfig::default()
        };
        let mut pod = req(None);
        assert_eq!(stop_signal(&pod, &image(None)), Signal::SIGTERM);
        assert_eq!(stop_signal(&pod, &image(Some("SIGQUIT"))), Signal::SIGQUIT);
        assert_eq!(stop_signal(&pod, &image(Some("2"))), Signal::SIGINT);
        // One berth cannot send (systemd's) falls back to SIGTERM.
        assert_eq!(
            stop_signal(&pod, &image(Some("SIGRTMIN+3"))),
            Signal::SIGTERM
        );
        pod.stop_signal = Some("SIGUSR1".into());
        assert_eq!(stop_signal(&pod, &image(Some("SIGQUIT"))), Signal::SIGUSR1);
    }

    #[test]
    fn entrypoint_overrides_image_command() {
        let config = ImageConfig {
            entrypoint: vec!["tini".into()],
            cmd: vec!["serve".into()],
            ..ImageConfig::default()
        };
        assert_eq!(
            command(&req(None), &config).expect("cmd"),
            ["tini", "serve"]
        );
        assert_eq!(
            command(&req(Some(vec!["sh", "-c", "x"])), &config).expect("cmd"),
            ["sh", "-c", "x"]
        );
        assert!(matches!(
            command(&req(None), &ImageConfig::default()),
            Err(NodeError::NoCommand { .. })
        ));
    }

    #[test]
    fn env_merges_image_user_and_berth() {
        let config = ImageConfig {
            env: vec!["PATH=/img".into(), "LANG=C".into()],
            ..ImageConfig::default()
        };
        let env = environment(&req(None), &config);
        assert!(env.contains(&"PATH=/x".to_string()));
        assert!(env.contains(&"LANG=C".to_string()));
        assert!(env.contains(&"GREETING=hi".to_string()));
        assert!(env.contains(&"BERTH_CONTAINER_ID=pod-s-1".to_string()));
        assert!(env.contains(&"KEEP_WARM_SECONDS=30".to_string()));
        assert_eq!(env.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
    }
}
