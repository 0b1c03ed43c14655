//! The node agent: everything that happens on the machine that runs a pod (pull, network,
//! root filesystem, runtime spec, shim) and its exact undoing. The control plane reaches it
//! only through the [`Node`] trait, the boundary that becomes remote when workers scale out.

use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;

use berth_api::{ImageSource, ImageSpec, ImageSummary, PruneResult};
use berth_image::{parse_reference, ImageConfig, PullProgress, Puller};
use berth_net::Network;
use berth_runtime::shim::{self, ShimConfig};
use berth_runtime::{ExitRecord, OciRuntime, ResourceLimits, RunSpec, ShimFiles};

use crate::spec::PodSpec;

/// Default pids limit per pod: enough for real apps, stops fork bombs.
pub const DEFAULT_PIDS_LIMIT: i64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    Image(#[from] berth_image::ImageError),
    #[error("{0}")]
    Net(#[from] berth_net::NetError),
    #[error("{0}")]
    Runtime(#[from] berth_runtime::RuntimeError),
    #[error("the image {image} has no command (no ENTRYPOINT or CMD); pass an entrypoint")]
    NoCommand { image: String },
    #[error("{action} failed: {error}; cleaning up also failed: {cleanup}")]
    WithCleanup {
        action: String,
        error: Box<NodeError>,
        cleanup: Box<NodeError>,
    },
    #[error("{0}")]
    Build(#[from] berth_image::build::BuildError),
    #[error("{0}")]
    Io(String),
}

pub type ProgressFn = Arc<dyn Fn(String) + Send + Sync>;

#[derive(Debug, Clone)]
pub struct StartRequest {
    pub id: String,
    pub stub_id: String,
    pub spec: PodSpec,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// The image that runs: the reference, or the built image's name.
    pub image: String,
    /// Ports served through the ingress: the spec's, or the image's EXPOSE ports.
    pub ports: Vec<u16>,
    pub addrs: Vec<IpAddr>,
}

/// What the node knows of a container's main process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessState {
    Running,
    Exited(ExitRecord),
    /// Neither running nor recorded: its shim is gone.
    Lost,
}

pub trait Node: Clone + Send + Sync + 'static {
    /// An image made ready to run (pulled and unpacked).
    type Image: Send + 'static;

    /// Resolves the pod's image, pulling what is missing, with progress lines.
    fn pull(
        &self,
        spec: &PodSpec,
        progress: ProgressFn,
    ) -> impl Future<Output = Result<Self::Image, NodeError>> + Send;

    /// Wires and starts a container from a pulled image; on error nothing of it is left.
    fn start(
        &self,
        req: StartRequest,
        image: Self::Image,
    ) -> impl Future<Output = Result<Started, NodeError>> + Send;

    /// SIGTERM, `grace`, then SIGKILL; returns once the process is gone (or lost).
    fn stop(&self, id: &str, grace: Duration) -> impl Future<Output = ProcessState> + Send;

    /// Removes everything the container held: runtime state, mounts, network. Idempotent.
    fn teardown(&self, id: &str) -> impl Future<Output = Result<(), NodeError>> + Send;

    fn process_state(&self, id: &str) -> ProcessState;

    /// The container's log file.
    fn log_path(&self, id: &str) -> PathBuf;

    /// Builds an image spec (or finds it cached), streaming log lines; stops when
    /// `cancelled` is set.
    fn build(
        &self,
        spec: ImageSpec,
        push: Option<String>,
        log: ProgressFn,
        cancelled: Arc<AtomicBool>,
    ) -> impl Future<Output = Result<BuiltImage, NodeError>> + Send;

    fn images(&self) -> Vec<ImageSummary>;

    /// Removes pulled images whose reference is not in `keep`, and unreferenced layers.
    fn prune(&self, keep: HashSet<String>) -> PruneResult;
}

/// The outcome of a build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    pub reference: String,
    pub cached: bool,
}

pub struct LocalNode {
    containers_dir: PathBuf,
    pub(crate) puller: Puller,
    pub(crate) network: Network,
    pub(crate) runtime: OciRuntime,
    /// The berth binary, run as `berth shim`.
    shim_exe: PathBuf,
    /// The CA bundle build steps trust; `None` leaves the image's own.
    build_ca: Option<PathBuf>,
}

impl LocalNode {
    pub fn new(
        containers_dir: PathBuf,
        puller: Puller,
        network: Network,
        runtime: OciRuntime,
        shim_exe: PathBuf,
        build_ca: Option<PathBuf>,
    ) -> Result<Self, NodeError> {
        std::fs::create_dir_all(&containers_dir)
            .map_err(|e| NodeError::Io(format!("{}: {e}", containers_dir.display())))?;
        Ok(LocalNode {
            containers_dir,
            puller,
            network,
            runtime,
            shim_exe,
            build_ca,
        })
    }

    pub(crate) fn containers_dir(&self) -> &Path {
        &self.containers_dir
    }

    pub(crate) fn build_ca(&self) -> Option<&Path> {
        self.build_ca.as_deref()
    }

    /// On a clean shutdown with no pod left: removes the bridge and the pods' parent cgroup,
    /// so the host looks as it did before the server ran.
    pub fn release_host_resources(&self) {
        self.network.remove_bridge_if_unused();
        berth_runtime::remove_empty_cgroup(CGROUP_PARENT);
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.containers_dir.join(id)
    }

    fn files(&self, id: &str) -> ShimFiles {
        ShimFiles::new(self.dir(id))
    }

    /// The blocking half of a start: network, rootfs, spec, shim.
    fn start_blocking(&self, req: &StartRequest, image: &LocalImage) -> Result<Started, NodeError> {
        let (config, layers) = (&image.config, &image.layers);
        let args = command(&req.spec, config)?;
        let dir = self.dir(&req.id);
        let bundle = dir.join("bundle");
        let rootfs = bundle.join("rootfs");
        let etc = dir.join("etc");
        for d in [&bundle, &etc] {
            std::fs::create_dir_all(d)
                .map_err(|e| NodeError::Io(format!("{}: {e}", d.display())))?;
        }

        let pod_net = self.network.setup(&req.id)?;
        berth_runtime::mount_overlay(layers, &dir.join("upper"), &dir.join("work"), &rootfs)?;
        let (uid, gid, additional_gids) =
            berth_runtime::resolve_user(&rootfs, config.user.as_deref())?;

        let hostname = hostname_of(&req.id);
        let addrs: Vec<IpAddr> = pod_net
            .ipv4
            .map(IpAddr::V4)
            .into_iter()
            .chain(pod_net.ipv6.map(IpAddr::V6))
            .collect();
        write_etc_files(&etc, &hostname, &addrs)?;

        let run = RunSpec {
            id: req.id.clone(),
            args,
            env: environment(req, config),
            cwd: config.working_dir.clone().unwrap_or_else(|| "/".into()),
            uid,
            gid,
            additional_gids,
            hostname,
            netns: pod_net.netns.clone(),
            limits: ResourceLimits {
                cpu_millis: req.spec.cpu_millis,
                memory_mib: req.spec.memory_mib,
                pids: DEFAULT_PIDS_LIMIT,
            },
            cgroups_path: cgroups_path(&req.id),
            etc_files: vec![
                (etc.join("resolv.conf"), "/etc/resolv.conf"),
                (etc.join("hosts"), "/etc/hosts"),
                (etc.join("hostname"), "/etc/hostname"),
            ],
        };
        let spec = berth_runtime::build_spec(&run)?;
        berth_runtime::write_bundle(&bundle, &spec)?;

        let shim_config = ShimConfig {
            id: req.id.clone(),
            bundle,
            dir,
            runtime: self.runtime.kind(),
            runtime_binary: self.runtime.binary().to_path_buf(),
            runtime_root: self.runtime.root().to_path_buf(),
            cgroups_path: run.cgroups_path.clone(),
        };
        shim::launch(&self.shim_exe, &shim_config)?;
        let ports = if req.spec.ports.is_empty() {
            config.exposed_ports.clone()
        } else {
            req.spec.ports.clone()
        };
        Ok(Started {
            image: image.name.clone(),
            ports,
            addrs,
        })
    }

    pub(crate) fn teardown_blocking(&self, id: &str) -> Result<(), NodeError> {
        let dir = self.dir(id);
        let mut first: Option<NodeError> = None;
        if let Err(e) = self.runtime.delete(id) {
            first.get_or_insert(e.into());
        }
        // runc removes the container's cgroup on delete; runsc leaves some hierarchies behind.
        berth_runtime::remove_empty_cgroup(&cgroups_path(id));
        if let Err(e) = berth_runtime::unmount(&dir.join("bundle/rootfs")) {
            first.get_or_insert(e.into());
        }
        if let Err(e) = self.network.teardown(id) {
            first.get_or_insert(e.into());
        }
        // Logs and the exit record stay for `berth container logs`; the filesystem goes.
        for sub in ["bundle", "upper", "work", "etc", "empty-lower"] {
            let path = dir.join(sub);
            if path.exists() {
                if let Err(e) = std::fs::remove_dir_all(&path) {
                    first.get_or_insert(NodeError::Io(format!("{}: {e}", path.display())));
                }
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// A pulled image: its config and unpacked layers, bottom first.
pub struct LocalImage {
    name: String,
    config: ImageConfig,
    layers: Vec<PathBuf>,
}

impl Node for Arc<LocalNode> {
    type Image = LocalImage;

    async fn pull(&self, spec: &PodSpec, progress: ProgressFn) -> Result<LocalImage, NodeError> {
        let image = match &spec.image {
            ImageSource::Reference(name) => {
                let reference = parse_reference(name)?;
                let image_name = name.clone();
                let on_progress =
                    move |p: PullProgress| progress(format!("Pulling image {image_name}: {p}"));
                self.puller.resolve(&reference, &on_progress).await?
            }
            ImageSource::Spec(image_spec) => {
                let never = Arc::new(AtomicBool::new(false));
                self.build_image(image_spec, progress, never).await?.0
            }
        };
        let layers = self.puller.store().layer_dirs(&image);
        Ok(LocalImage {
            name: image.reference,
            config: image.config,
            layers,
        })
    }

    async fn start(&self, req: StartRequest, image: LocalImage) -> Result<Started, NodeError> {
        let node = self.clone();
        let id = req.id.clone();
        let result = tokio::task::spawn_blocking(move || {
            let started = node.start_blocking(&req, &image);
            match started {
                Ok(s) => Ok(s),
                Err(error) => match node.teardown_blocking(&req.id) {
                    Ok(()) => Err(error),
                    Err(cleanup) => Err(NodeError::WithCleanup {
                        action: "starting the container".into(),
                        error: Box::new(error),
                        cleanup: Box::new(cleanup),
                    }),
                },
            }
        })
        .await;
        result.unwrap_or_else(|e| Err(NodeError::Io(format!("start of {id} panicked: {e}"))))
    }

    async fn stop(&self, id: &str, grace: Duration) -> ProcessState {
        let node = self.clone();
        let id = id.to_string();
        let signal = |node: Arc<LocalNode>, id: String, sig: &'static str, all: bool| async move {
            let _ = tokio::task::spawn_blocking(move || node.runtime.kill(&id, sig, all)).await;
        };
        if node.process_state(&id) != ProcessState::Running {
            return node.process_state(&id);
        }
        signal(node.clone(), id.clone(), "TERM", false).await;
        if let Some(state) = wait_gone(&node, &id, grace).await {
            return state;
        }
        tracing::info!(container = %id, "did not stop within {grace:?} of SIGTERM; sending SIGKILL");
        signal(node.clone(), id.clone(), "KILL", true).await;
        wait_gone(&node, &id, Duration::from_secs(10))
            .await
            .unwrap_or(ProcessState::Lost)
    }

    async fn teardown(&self, id: &str) -> Result<(), NodeError> {
        let node = self.clone();
        let id = id.to_string();
        tokio::task::spawn_blocking(move || node.teardown_blocking(&id))
            .await
            .unwrap_or_else(|e| Err(NodeError::Io(format!("teardown panicked: {e}"))))
    }

    fn process_state(&self, id: &str) -> ProcessState {
        let files = self.files(id);
        if let Some(exit) = files.read_exit() {
            ProcessState::Exited(exit)
        } else if files.shim_alive() {
            ProcessState::Running
        } else if let Some(exit) = files.read_exit() {
            // The shim wrote its record between the two reads.
            ProcessState::Exited(exit)
        } else {
            ProcessState::Lost
        }
    }

    fn log_path(&self, id: &str) -> PathBuf {
        self.files(id).log()
    }

    async fn build(
        &self,
        spec: ImageSpec,
        push: Option<String>,
        log: ProgressFn,
        cancelled: Arc<AtomicBool>,
    ) -> Result<BuiltImage, NodeError> {
        let (image, cached) = self.build_image(&spec, log.clone(), cancelled).await?;
        if let Some(target) = push {
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

    fn images(&self) -> Vec<ImageSummary> {
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

    fn prune(&self, keep: HashSet<String>) -> PruneResult {
        let pruned = self
            .puller
            .store()
            .prune(&|image| keep.contains(&image.reference));
        PruneResult {
            removed_images: pruned.removed_images,
            removed_layers: pruned.removed_layers,
            freed_bytes: pruned.freed_bytes,
        }
    }
}

async fn wait_gone(node: &Arc<LocalNode>, id: &str, limit: Duration) -> Option<ProcessState> {
    let deadline = Instant::now() + limit;
    loop {
        match node.process_state(id) {
            ProcessState::Running if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            ProcessState::Running => return None,
            other => return Some(other),
        }
    }
}

/// All pods' cgroups live under this one.
const CGROUP_PARENT: &str = "/berth";

pub fn cgroups_path(id: &str) -> String {
    format!("{CGROUP_PARENT}/{id}")
}

/// The process to run: the pod's entrypoint, or the image's ENTRYPOINT + CMD.
fn command(spec: &PodSpec, config: &ImageConfig) -> Result<Vec<String>, NodeError> {
    let args = match &spec.entrypoint {
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
            image: spec.image_name(),
        });
    }
    Ok(args)
}

/// Image env, then the user's env over it, then berth's own variables.
fn environment(req: &StartRequest, config: &ImageConfig) -> Vec<String> {
    let mut vars: Vec<(String, String)> = Vec::new();
    let set = |vars: &mut Vec<(String, String)>, k: &str, v: &str| {
        vars.retain(|(name, _)| name != k);
        vars.push((k.to_string(), v.to_string()));
    };
    set(
        &mut vars,
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
    for entry in &config.env {
        let (k, v) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
        set(&mut vars, k, v);
    }
    for (k, v) in &req.spec.env {
        set(&mut vars, k, v);
    }
    set(&mut vars, "BERTH_CONTAINER_ID", &req.id);
    set(&mut vars, "BERTH_STUB_ID", &req.stub_id);
    set(
        &mut vars,
        "KEEP_WARM_SECONDS",
        &req.spec.keep_warm_seconds.to_string(),
    );
    if !vars.iter().any(|(k, _)| k == "HOME") {
        vars.push(("HOME".into(), "/root".into()));
    }
    vars.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Hostnames are limited to 63 characters; the container id's tail is unique enough.
fn hostname_of(id: &str) -> String {
    let h: String = id
        .chars()
        .rev()
        .take(63)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    h.trim_start_matches('-').to_string()
}

pub(crate) fn write_etc_files(
    etc: &Path,
    hostname: &str,
    addrs: &[IpAddr],
) -> Result<(), NodeError> {
    let io = |p: &Path, e: std::io::Error| NodeError::Io(format!("{}: {e}", p.display()));
    let mut hosts =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for addr in addrs {
        hosts.push_str(&format!("{addr}\t{hostname}\n"));
    }
    for (name, text) in [
        ("hosts", hosts),
        ("hostname", format!("{hostname}\n")),
        (
            "resolv.conf",
            resolv_conf(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()),
        ),
    ] {
        let path = etc.join(name);
        std::fs::write(&path, text).map_err(|e| io(&path, e))?;
    }
    Ok(())
}

/// The host's resolvers minus loopback ones (unreachable from a pod's namespace), falling
/// back to public resolvers as Docker does.
fn resolv_conf(host: &str) -> String {
    let mut out = String::new();
    let mut servers = 0;
    for line in host.lines() {
        let trimmed = line.trim();
        if let Some(addr) = trimmed.strip_prefix("nameserver") {
            match addr.trim().parse::<IpAddr>() {
                Ok(ip) if !ip.is_loopback() => servers += 1,
                _ => continue,
            }
        } else if !(trimmed.starts_with("search") || trimmed.starts_with("options")) {
            continue;
        }
        out.push_str(trimmed);
        out.push('\n');
    }
    if servers == 0 {
        out.push_str("nameserver 8.8.8.8\nnameserver 8.8.4.4\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(entrypoint: Option<Vec<&str>>) -> PodSpec {
        PodSpec {
            image: "img".into(),
            ports: vec![],
            cpu_millis: 1000,
            memory_mib: 128,
            env: [
                ("GREETING".to_string(), "hi".to_string()),
                ("PATH".to_string(), "/x".to_string()),
            ]
            .into_iter()
            .collect(),
            entrypoint: entrypoint.map(|e| e.into_iter().map(String::from).collect()),
            keep_warm_seconds: 30,
        }
    }

    #[test]
    fn entrypoint_overrides_image_command() {
        let config = ImageConfig {
            entrypoint: vec!["tini".into()],
            cmd: vec!["serve".into()],
            ..ImageConfig::default()
        };
        assert_eq!(
            command(&spec(None), &config).expect("cmd"),
            ["tini", "serve"]
        );
        assert_eq!(
            command(&spec(Some(vec!["sh", "-c", "x"])), &config).expect("cmd"),
            ["sh", "-c", "x"]
        );
        assert!(matches!(
            command(&spec(None), &ImageConfig::default()),
            Err(NodeError::NoCommand { .. })
        ));
    }

    #[test]
    fn env_merges_image_user_and_berth() {
        let config = ImageConfig {
            env: vec!["PATH=/img".into(), "LANG=C".into()],
            ..ImageConfig::default()
        };
        let req = StartRequest {
            id: "pod-s-1".into(),
            stub_id: "s".into(),
            spec: spec(None),
        };
        let env = environment(&req, &config);
        assert!(env.contains(&"PATH=/x".to_string()));
        assert!(env.contains(&"LANG=C".to_string()));
        assert!(env.contains(&"GREETING=hi".to_string()));
        assert!(env.contains(&"BERTH_CONTAINER_ID=pod-s-1".to_string()));
        assert!(env.contains(&"KEEP_WARM_SECONDS=30".to_string()));
        assert_eq!(env.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
    }

    #[test]
    fn loopback_resolvers_are_dropped() {
        assert_eq!(
            resolv_conf("nameserver 127.0.0.53\noptions edns0\n"),
            "options edns0\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
        assert_eq!(
            resolv_conf("# c\nnameserver 10.0.0.2\nsearch x\n"),
            "nameserver 10.0.0.2\nsearch x\n"
        );
    }
}
