//! The control plane: HTTP API, state store, lifecycle and the node agent, run together by
//! `berth server`.

mod access;
mod agent;
mod api;
mod cluster;
mod deployments;
mod fleet;
mod handover;
mod images;
mod lifecycle;
mod node;
mod nodes;
mod profile;
mod readiness;
mod schedule;
mod secrets;
mod spec;
mod start_metrics;
mod state;
mod storage;
mod store;
mod systemd;
mod tls;
pub mod worker;

pub use handover::{Relaunch, Stop};
pub use tls::{TlsConfig, TlsSource, LETS_ENCRYPT};

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_api::ClientProfile;
use berth_image::{ContentStore, PullOptions, Puller, RegistryCredentials, RegistryMirror};
use berth_net::{NetConfig, Network};
use berth_runtime::{OciRuntime, RuntimeKind};
use ipnet::{Ipv4Net, Ipv6Net};

use crate::node::Node as _;

pub use api::openapi_document;

/// How long a deployment's new version has to answer, pull and build included.
const DEPLOY_LIMIT: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Net(#[from] berth_net::NetError),
    #[error(transparent)]
    Image(#[from] berth_image::ImageError),
    #[error(transparent)]
    Node(#[from] node::NodeError),
    #[error(transparent)]
    Lifecycle(#[from] lifecycle::LifecycleError),
    #[error(transparent)]
    Deploy(#[from] deployments::DeployError),
    #[error(transparent)]
    Secrets(#[from] secrets::SecretError),
    #[error(transparent)]
    Nodes(#[from] nodes::NodesError),
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
    #[error("cannot listen on {addr} for the {what}: {source}")]
    Listen {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the client profile {path}: {source}")]
    Profile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTPS ingress: {0}")]
    Tls(#[from] berth_proxy::tls::TlsError),
    #[error("the {0} stopped unexpectedly")]
    Crashed(&'static str),
    #[error("init binary {0}: not a file (give a static tini, or leave --init-binary out)")]
    InitMissing(PathBuf),
    #[error("taking over from the previous server: {0}")]
    Handover(#[from] handover::HandoverError),
}

/// Static inits berth looks for when none is given: Debian's tini, then podman's catatonit.
const INIT_CANDIDATES: [&str; 2] = ["/usr/bin/tini-static", "/usr/libexec/podman/catatonit"];

/// The init pods get as PID 1: the one given, else the first candidate found. None found
/// is a warning, not an error: pods then run without one, and say so.
fn find_init(given: Option<&Path>) -> Result<Option<PathBuf>, ServerError> {
    if let Some(path) = given {
        return if path.is_file() {
            Ok(Some(path.to_path_buf()))
        } else {
            Err(ServerError::InitMissing(path.to_path_buf()))
        };
    }
    let found = INIT_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    if found.is_none() {
        tracing::warn!(
            "no init binary ({}): pods run without an init as PID 1 (apt install tini)",
            INIT_CANDIDATES.join(", ")
        );
    }
    Ok(found)
}

/// Checks that a `--database-url` names a database berth can keep its state in.
pub fn check_database_url(url: &str) -> Result<(), String> {
    store::Backend::of(url)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// How a machine runs pods, the same for a server and a worker.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub insecure_registries: Vec<String>,
    pub registry_mirrors: Vec<RegistryMirror>,
    pub runtime: RuntimeKind,
    /// The runtime binary; its usual name on PATH when unset.
    pub runtime_binary: Option<PathBuf>,
    /// The static init mounted into pods as PID 1; found on the host when unset.
    pub init_binary: Option<PathBuf>,
    /// Filter runc pods' syscalls (off only to measure the filter's cost).
    pub seccomp: bool,
    /// Pod networks kept ready ahead of creates; 0 makes each on its create's path.
    pub warm_networks: usize,
    pub subnet_v4: Ipv4Net,
    pub subnet_v6: Option<Ipv6Net>,
    pub bridge: String,
    pub cni_bin_dir: PathBuf,
    /// The berth binary (`berth env-runtime` for Dockerfile builds).
    pub berth_exe: PathBuf,
    /// The berth-shim binary, one running per container.
    pub shim_exe: PathBuf,
    /// The CA bundle build steps trust (not baked into images); `None` for the image's own.
    pub build_ca_bundle: Option<PathBuf>,
    /// Resolvers for pods; empty to follow the host's.
    pub dns: Vec<std::net::IpAddr>,
    /// The most bytes a code upload may unpack to.
    pub max_code_bytes: u64,
    /// A container's log rotates to `container.log.1` past this size.
    pub container_log_max_bytes: u64,
    /// How long an ended container's log is kept; `None` keeps it for ever.
    pub log_retention: Option<Duration>,
}

impl NodeSettings {
    /// The pod network these settings describe; checked, but nothing is made yet.
    pub fn network(&self, state_dir: &Path) -> Result<Network, ServerError> {
        Ok(Network::new(NetConfig {
            bridge: self.bridge.clone(),
            subnet_v4: self.subnet_v4,
            subnet_v6: self.subnet_v6,
            cni_bin_dir: self.cni_bin_dir.clone(),
            state_dir: state_dir.join("net"),
        })?)
    }

    /// Opens the node that runs pods on this machine, its state under `state_dir`.
    pub fn open_node(
        &self,
        state_dir: &Path,
        network: Network,
    ) -> Result<Arc<node::LocalNode>, ServerError> {
        let puller = Puller::new(
            ContentStore::open(state_dir.join("images"))?,
            PullOptions {
                insecure_registries: self.insecure_registries.clone(),
                mirrors: self.registry_mirrors.clone(),
                credentials: RegistryCredentials::from_env(),
            },
        );
        let runtime = OciRuntime::new(
            self.runtime,
            self.runtime_binary
                .clone()
                .unwrap_or_else(|| self.runtime.default_binary().into()),
            state_dir.join("runtime").join(self.runtime.as_str()),
        );
        let node = node::LocalNode::new(node::LocalNodeConfig {
            containers_dir: state_dir.join("containers"),
            puller,
            network,
            runtime,
            shim_exe: self.shim_exe.clone(),
            berth_exe: self.berth_exe.clone(),
            build_ca: self.build_ca_bundle.clone(),
            dns: self.dns.clone(),
            code_dir: state_dir.join("code"),
            max_code_bytes: self.max_code_bytes,
            volumes_dir: state_dir.join("volumes"),
            seccomp: self.seccomp,
            conda_cache: state_dir.join("conda"),
            buildah_dir: state_dir.join("buildah"),
            init_binary: find_init(self.init_binary.as_deref())?,
            warm_networks: self.warm_networks,
            log_max_bytes: self.container_log_max_bytes,
            log_retention: self.log_retention,
        })?;
        if !self.seccomp {
            tracing::warn!(
                "runc pods start with no seccomp filter (--unsafe-no-seccomp): never run untrusted code on this machine"
            );
        }
        Ok(node)
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub state_dir: PathBuf,
    /// The state store's database; `state.db` in the state directory when unset.
    pub database_url: Option<String>,
    pub api_listen: SocketAddr,
    pub ingress_listen: SocketAddr,
    pub domain: String,
    /// How this machine runs pods: images, network, runtime.
    pub node: NodeSettings,
    pub stop_timeout: Duration,
    /// Stop every pod (concurrently) when the server stops, instead of leaving them running.
    pub stop_pods_on_exit: bool,
    pub profile_path: PathBuf,
    /// How long a request that wakes a deployment waits before a 503.
    pub wake_timeout: Duration,
    /// HTTPS on the ingress; pod URLs are `https://` when set.
    pub tls: Option<TlsConfig>,
    /// Request bodies through the ingress past this many bytes get 413.
    pub max_request_body_bytes: u64,
    /// Open connections one pod may hold through the ingress before new ones get 503.
    pub pod_connection_limit: usize,
    /// Event-loop threads of its own for each ingress listener; 0 serves pod traffic on the
    /// server's shared runtime.
    pub ingress_threads: usize,
    /// How long a stopping server lets open requests and connections finish.
    pub shutdown_grace: Duration,
    /// How long the old process of a hot restart serves the connections it still holds.
    pub upgrade_drain: Duration,
    /// How a hot restart starts the new process; `None` refuses hot restarts.
    pub relaunch: Option<Relaunch>,
    /// Pod starts in flight (create to RUNNING, pulls included) past which creates get 429.
    pub max_pending_starts: usize,
    /// Image builds in flight past which builds get 429.
    pub max_pending_builds: usize,
    /// Where workers join and heartbeat (mutual TLS with the cluster CA); no workers when
    /// unset.
    pub node_listen: Option<SocketAddr>,
    /// What this node registers besides its capacity, for placing pods (`pool=gpu`).
    pub node_labels: std::collections::BTreeMap<String, String>,
    /// Pods may be placed on this machine; off for a control plane that leaves pods to
    /// workers.
    pub takes_pods: bool,
}

/// Runs the server until `stops` asks it to shut down (or closes), or until a hot restart
/// asked for on `stops` has handed over. Running pods are left running: their shims keep
/// them, and the next start adopts them.
pub async fn run(
    config: ServerConfig,
    stops: tokio::sync::mpsc::UnboundedReceiver<Stop>,
) -> Result<(), ServerError> {
    let state_dir = &config.state_dir;
    let mut inherited = handover::Inherited::from_env();
    let mut predecessor = handover::Predecessor::from_env();
    // Checked before anything is written: a refused configuration leaves no state behind.
    let network = config.node.network(state_dir)?;
    if let Some(predecessor) = &mut predecessor {
        // The configuration is good: the old server may now let go of the state.
        predecessor.ready().await?;
    }
    create_private_dir(state_dir)?;
    let store = match &config.database_url {
        Some(url) => store::Store::connect(url).await?,
        None => store::Store::open(&state_dir.join("state.db")).await?,
    };
    let token = profile::ensure_admin_token(&store, state_dir).await?;

    let node = config.node.open_node(state_dir, network)?;
    // Until the server serves, a failed start (a port in use, a bad TLS file) undoes what
    // the node made ready, its warm networks and bridge, instead of leaving them behind.
    let mut unwind = ReleaseOnFailure(Some(node.clone()));
    let secrets = secrets::Secrets::open(store.clone(), state_dir)?;
    let node_id = nodes::node_id(state_dir)?;
    let nodes = nodes::Nodes::new(store.clone(), node_id.clone());
    let heartbeat = nodes
        .register(nodes::this_node(
            node_id.clone(),
            node.runtimes()
                .iter()
                .map(|k| k.as_str().to_string())
                .collect(),
            config.node_labels.clone(),
            config.takes_pods,
        ))
        .await?;

    let api_listener = match inherited.take("api", config.api_listen) {
        Some(listener) => {
            tokio::net::TcpListener::from_std(listener).map_err(|source| ServerError::Listen {
                what: "API",
                addr: config.api_listen,
                source,
            })?
        }
        None => bind("API", config.api_listen).await?,
    };
    let ingress_listener = match inherited.take("ingress", config.ingress_listen) {
        Some(listener) => listener,
        None => bind_dual_stack("ingress", config.ingress_listen)?,
    };
    let ingress_addr = ingress_listener
        .local_addr()
        .unwrap_or(config.ingress_listen);
    let api_addr = api_listener.local_addr().unwrap_or(config.api_listen);
    let (tls_listener, tls_addr, certificates) = match &config.tls {
        Some(tls) => {
            let listener = match inherited.take("https", tls.listen) {
                Some(listener) => listener,
                None => bind_dual_stack("HTTPS ingress", tls.listen)?,
            };
            let addr = listener.local_addr().unwrap_or(tls.listen);
            let certificates = tls::certificates(&tls.source, state_dir).await?;
            (Some(listener), Some(addr), Some(certificates))
        }
        None => (None, None, None),
    };
    let node_listener = match config.node_listen {
        Some(addr) => Some(match inherited.take("node", addr) {
            Some(listener) => tokio::net::TcpListener::from_std(listener).map_err(|source| {
                ServerError::Listen {
                    what: "node port",
                    addr,
                    source,
                }
            })?,
            None => bind("node port", addr).await?,
        }),
        None => None,
    };
    // Kept for a hot restart: the new process inherits these, whatever the serving loops do
    // with their own handles.
    let handover_sockets = HandoverSockets::dup(
        &api_listener,
        &ingress_listener,
        tls_listener.as_ref(),
        node_listener.as_ref(),
    )
    .map_err(|source| ServerError::Listen {
        what: "API",
        addr: api_addr,
        source,
    })?;
    let (cluster, node_port) = match node_listener {
        Some(tcp) => {
            let addr = tcp.local_addr().map_err(|source| ServerError::Listen {
                what: "node port",
                addr: config.node_listen.unwrap_or(api_addr),
                source,
            })?;
            let cluster = cluster::Cluster::open(state_dir, store.clone(), addr)?;
            let port = cluster.serve(tcp)?;
            tracing::info!("workers join on {addr} (`berth server join-token` prints a token)");
            (Some(cluster), Some(port))
        }
        None => (None, None),
    };
    let (url_scheme, url_port) = match tls_addr {
        Some(addr) => ("https", addr.port()),
        None => ("http", ingress_addr.port()),
    };

    // The control plane's machine and the workers that joined, as one node; recovery needs
    // the workers known before it looks at their pods.
    let agent_tls = match &cluster {
        Some(cluster) => Some(cluster.agent_client_tls()?),
        None => None,
    };
    let fleet = fleet::Fleet::new(node.clone(), node_id.clone(), agent_tls);
    // Workers are reached only with the cluster's certificate: without a node port there
    // are none to keep in step.
    let fleet_sync = match &cluster {
        Some(cluster) => {
            fleet.sync(&store.nodes().await?);
            Some(fleet.spawn_sync(
                store.clone(),
                berth_cluster::HEARTBEAT_INTERVAL,
                cluster.registrations(),
            ))
        }
        None => None,
    };

    let routes = Arc::new(berth_proxy::RouteTable::new());
    let metrics = Arc::new(berth_proxy::ProxyMetrics::default());
    let lifecycle = lifecycle::Lifecycle::new(
        store.clone(),
        fleet.clone(),
        routes.clone(),
        lifecycle::LifecycleConfig {
            domain: config.domain.clone(),
            url_scheme,
            url_port,
            stop_grace: config.stop_timeout,
            max_pending_starts: config.max_pending_starts,
            node_id,
        },
        Some(secrets.clone()),
    );
    lifecycle.recover().await?;
    let monitor = lifecycle.spawn_monitor();
    let deployments = deployments::Deployments::new(
        lifecycle.clone(),
        store.clone(),
        routes.clone(),
        deployments::DeployConfig {
            wake_limit: config.wake_timeout,
            deploy_limit: DEPLOY_LIMIT,
        },
    );
    deployments.recover().await?;

    let gateway = profile::gateway_url(api_addr);
    profile::write_profile(
        &config.profile_path,
        &ClientProfile {
            gateway: gateway.clone(),
            token,
            ca_cert: certificates
                .as_ref()
                .and_then(|c| c.local_ca.as_ref())
                .map(|p| p.display().to_string()),
        },
    )?;

    let access = access::PodAccess::load(store.clone()).await?;
    let app = api::router(Arc::new(api::AppState {
        lifecycle: lifecycle.clone(),
        deployments: deployments.clone(),
        images: images::Images::new(fleet.clone(), store.clone(), config.max_pending_builds),
        storage: storage::Storage::new(fleet.clone(), store.clone()),
        secrets,
        nodes,
        cluster,
        tokens: profile::Tokens::new(store.clone()),
        access: access.clone(),
        metrics: metrics.clone(),
        max_code_bytes: config.node.max_code_bytes,
    }));
    let mut ingress = berth_proxy::Ingress::new(config.domain.clone(), routes, metrics)
        .with_route_miss(deployments)
        .with_authorizer(access)
        .with_max_body_bytes(config.max_request_body_bytes)
        .with_pod_connection_limit(config.pod_connection_limit);
    if let Some(addr) = tls_addr {
        ingress = ingress.with_https_redirect(addr.port());
    }
    if let Some(challenges) = certificates
        .as_ref()
        .and_then(|c| c.acme_challenges.clone())
    {
        ingress = ingress.with_acme_challenges(challenges);
    }
    let ingress = Arc::new(ingress);
    let threads = config.ingress_threads;
    let ingress_err = |what, addr, source| ServerError::Listen { what, addr, source };
    let mut ingress_threads = vec![berth_proxy::serve_on_threads(
        "berth-ingress",
        ingress_listener,
        threads,
        |tcp| tcp,
        ingress.clone(),
    )
    .map_err(|e| ingress_err("ingress", ingress_addr, e))?];
    if let (Some(listener), Some(certificates), Some(addr)) = (tls_listener, certificates, tls_addr)
    {
        let domain = config.domain.clone();
        let source = certificates.source.clone();
        ingress_threads.push(
            berth_proxy::serve_on_threads(
                "berth-https",
                listener,
                threads,
                move |tcp| berth_proxy::tls::TlsListener::new(tcp, &domain, source.clone()),
                ingress.clone(),
            )
            .map_err(|e| ingress_err("HTTPS ingress", addr, e))?,
        );
        if let Some(ca) = &certificates.local_ca {
            tracing::info!(
                "HTTPS with berth's local CA {}: `berth ca` tells how to trust it",
                ca.display()
            );
        }
    }
    tracing::info!(
        "berth server ready: API {gateway}, ingress {url_scheme}://<stub-id>-<port>.{}:{url_port} (client profile {})",
        config.domain,
        config.profile_path.display()
    );
    let pid_file = state_dir.join("server.pid");
    if let Err(e) = std::fs::write(&pid_file, format!("{}\n", std::process::id())) {
        tracing::warn!("writing {}: {e}", pid_file.display());
    }
    systemd::notify(&format!("MAINPID={}\nREADY=1", std::process::id()));
    if let Some(predecessor) = predecessor {
        predecessor.serving().await;
    }

    // The API stops accepting once a stop is decided (for an upgrade: once the new process
    // has found its configuration good), and lets open requests finish within the grace.
    let grace = config.shutdown_grace;
    let (decided_tx, decided_rx) = tokio::sync::oneshot::channel::<Exit>();
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let decide = {
        let relaunch = config.relaunch.clone();
        let sockets = handover_sockets.raw();
        async move {
            let exit = next_exit(stops, relaunch, sockets).await;
            let _ = decided_tx.send(exit);
            let _ = stopping_tx.send(());
        }
    };
    unwind.disarm();
    let serving = axum::serve(api_listener, app).with_graceful_shutdown(decide);
    let served = tokio::select! {
        served = serving.into_future() => served,
        _ = async {
            let _ = stopping_rx.await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::info!("API requests still open after {grace:?}; stopping anyway");
            Ok(())
        }
    };
    if let Err(e) = served {
        tracing::error!("API server: {e}");
    }
    let exit = decided_rx.await.unwrap_or(Exit::Shutdown);
    let upgrading = matches!(exit, Exit::Upgrade(_));
    if upgrading {
        systemd::notify("RELOADING=1");
    } else {
        systemd::notify("STOPPING=1");
    }

    // Starts and stops in flight finish here, so the process taking over finds none half
    // done (one still running past the grace is left to that process's recovery).
    let left = lifecycle.quiesce(grace).await;
    if left > 0 {
        tracing::warn!("{left} pod starts or stops still running after {grace:?}");
    }
    if config.stop_pods_on_exit && !upgrading {
        match lifecycle.stop_all().await {
            Ok(n) => tracing::info!("stopped {n} pods (--stop-pods-on-exit)"),
            Err(e) => tracing::error!("stopping the pods: {e}"),
        }
    }
    monitor.abort();
    heartbeat.abort();
    if let Some(sync) = fleet_sync {
        sync.abort();
    }
    drop(node_port);
    node.release_host_resources();
    store.close().await;

    let drain_limit = match exit {
        Exit::Upgrade(successor) => {
            let pid = successor.pid();
            match successor.hand_over().await {
                Ok(()) => tracing::info!(
                    "the new server (pid {pid}) serves; draining the connections held here"
                ),
                Err(e) => tracing::error!(
                    "the new server (pid {pid}) did not take over: {e}; nothing serves the API now"
                ),
            }
            config.upgrade_drain
        }
        Exit::Shutdown => grace,
    };
    ingress.drain().start();
    drop(handover_sockets);
    let drained = ingress.drain().wait_closed(drain_limit).await;
    if !drained {
        tracing::info!(
            "{} ingress connections still open after {drain_limit:?}; closing them",
            ingress.drain().open()
        );
    }
    for threads in ingress_threads {
        let _ = tokio::task::spawn_blocking(move || threads.stop()).await;
    }
    if !upgrading {
        remove_pid_file(&pid_file);
    }
    if upgrading {
        tracing::info!("berth server handed over");
    } else if config.stop_pods_on_exit {
        tracing::info!("berth server stopped");
    } else {
        tracing::info!(
            "berth server stopped; running pods keep running and are adopted on the next start"
        );
    }
    Ok(())
}

/// How this server ends.
enum Exit {
    Shutdown,
    /// A new process found its configuration good and waits to take over.
    Upgrade(handover::Successor),
}

/// Waits for a stop; an upgrade whose new process fails is logged and waited past.
async fn next_exit(
    mut stops: tokio::sync::mpsc::UnboundedReceiver<Stop>,
    relaunch: Option<Relaunch>,
    sockets: Vec<(&'static str, std::os::fd::RawFd)>,
) -> Exit {
    loop {
        match stops.recv().await {
            None | Some(Stop::Shutdown) => return Exit::Shutdown,
            Some(Stop::Upgrade) => {
                let Some(relaunch) = &relaunch else {
                    tracing::warn!("hot restart asked for, but this server cannot relaunch itself");
                    continue;
                };
                tracing::info!("hot restart: starting {}", relaunch.exe.display());
                match handover::Successor::start(relaunch, &sockets).await {
                    Ok(successor) => {
                        tracing::info!(
                            "hot restart: the new server (pid {}) is ready to take over",
                            successor.pid()
                        );
                        return Exit::Upgrade(successor);
                    }
                    Err(e) => tracing::error!("hot restart abandoned, still serving: {e}"),
                }
            }
        }
    }
}

/// Releases the node's host resources when dropped armed: on every early return of a start.
struct ReleaseOnFailure(Option<Arc<node::LocalNode>>);

impl ReleaseOnFailure {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for ReleaseOnFailure {
    fn drop(&mut self) {
        if let Some(node) = self.0.take() {
            node.release_host_resources();
        }
    }
}

/// Copies of the listening sockets, for the process that takes over.
struct HandoverSockets {
    api: OwnedFd,
    ingress: OwnedFd,
    https: Option<OwnedFd>,
    node: Option<OwnedFd>,
}

impl HandoverSockets {
    fn dup(
        api: &tokio::net::TcpListener,
        ingress: &std::net::TcpListener,
        https: Option<&std::net::TcpListener>,
        node: Option<&tokio::net::TcpListener>,
    ) -> std::io::Result<Self> {
        Ok(Self {
            api: api.as_fd().try_clone_to_owned()?,
            ingress: ingress.as_fd().try_clone_to_owned()?,
            https: https.map(|l| l.as_fd().try_clone_to_owned()).transpose()?,
            node: node.map(|l| l.as_fd().try_clone_to_owned()).transpose()?,
        })
    }

    /// Names and descriptor numbers, valid while `self` lives.
    fn raw(&self) -> Vec<(&'static str, std::os::fd::RawFd)> {
        let mut all = vec![
            ("api", self.api.as_raw_fd()),
            ("ingress", self.ingress.as_raw_fd()),
        ];
        if let Some(https) = &self.https {
            all.push(("https", https.as_raw_fd()));
        }
        if let Some(node) = &self.node {
            all.push(("node", node.as_raw_fd()));
        }
        all
    }
}

/// Removes the pid file if it still names this process (a successor writes its own).
fn remove_pid_file(path: &Path) {
    let ours = std::fs::read_to_string(path)
        .ok()
        .is_some_and(|text| text.trim() == std::process::id().to_string());
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

async fn bind(
    what: &'static str,
    addr: SocketAddr,
) -> Result<tokio::net::TcpListener, ServerError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Listen { what, addr, source })
}

/// Binds a TCP listener; an IPv6 wildcard also takes IPv4 (`*.localhost` resolves to ::1
/// first on many systems, 127.0.0.1 on others: both must reach the ingress).
fn bind_dual_stack(
    what: &'static str,
    addr: SocketAddr,
) -> Result<std::net::TcpListener, ServerError> {
    use socket2::{Domain, Socket, Type};
    let err = |source| ServerError::Listen { what, addr, source };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(err)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false).map_err(err)?;
    }
    socket.set_reuse_address(true).map_err(err)?;
    socket.set_nonblocking(true).map_err(err)?;
    socket.bind(&addr.into()).map_err(err)?;
    socket.listen(1024).map_err(err)?;
    Ok(socket.into())
}

fn create_private_dir(path: &std::path::Path) -> Result<(), ServerError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |source| ServerError::StateDir {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(err)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    #[tokio::test]
    async fn an_ipv6_wildcard_ingress_takes_ipv4_too() {
        let any: SocketAddr = "[::]:0".parse().expect("addr");
        let listener = super::bind_dual_stack("ingress", any).expect("bind");
        let listener = tokio::net::TcpListener::from_std(listener).expect("register");
        let port = listener.local_addr().expect("addr").port();
        // `*.localhost` resolves to ::1 on some systems and 127.0.0.1 on others.
        for host in ["127.0.0.1", "[::1]"] {
            let connect = tokio::net::TcpStream::connect(format!("{host}:{port}"));
            let (stream, accepted) = tokio::join!(connect, listener.accept());
            stream.expect("connects");
            accepted.expect("accepted");
        }
    }
}
