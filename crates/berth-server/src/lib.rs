//! The control plane: HTTP API, state store, lifecycle and the node agent, run together by
//! `berth server`.

mod access;
mod api;
mod deployments;
mod images;
mod lifecycle;
mod node;
mod profile;
mod readiness;
mod secrets;
mod spec;
mod start_metrics;
mod state;
mod storage;
mod store;
mod tls;

pub use tls::{TlsConfig, TlsSource, LETS_ENCRYPT};

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_api::ClientProfile;
use berth_image::{ContentStore, PullOptions, Puller, RegistryCredentials, RegistryMirror};
use berth_net::{NetConfig, Network};
use berth_runtime::{OciRuntime, RuntimeKind};
use ipnet::{Ipv4Net, Ipv6Net};

pub use api::openapi_document;

/// How long a stopping server waits for open API requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
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

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub state_dir: PathBuf,
    pub api_listen: SocketAddr,
    pub ingress_listen: SocketAddr,
    pub domain: String,
    pub insecure_registries: Vec<String>,
    pub registry_mirrors: Vec<RegistryMirror>,
    pub runtime: RuntimeKind,
    /// The runtime binary; its usual name on PATH when unset.
    pub runtime_binary: Option<PathBuf>,
    pub stop_timeout: Duration,
    /// Stop every pod (concurrently) when the server stops, instead of leaving them running.
    pub stop_pods_on_exit: bool,
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
    pub profile_path: PathBuf,
    /// The CA bundle build steps trust (not baked into images); `None` for the image's own.
    pub build_ca_bundle: Option<PathBuf>,
    /// Resolvers for pods; empty to follow the host's.
    pub dns: Vec<std::net::IpAddr>,
    /// The most bytes a code upload may unpack to.
    pub max_code_bytes: u64,
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
}

/// Runs the server until `shutdown` resolves. Running pods are left running: their shims
/// keep them, and the next start adopts them.
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let state_dir = &config.state_dir;
    // Checked before anything is written: a refused configuration leaves no state behind.
    let network = Network::new(NetConfig {
        bridge: config.bridge.clone(),
        subnet_v4: config.subnet_v4,
        subnet_v6: config.subnet_v6,
        cni_bin_dir: config.cni_bin_dir.clone(),
        state_dir: state_dir.join("net"),
    })?;
    create_private_dir(state_dir)?;
    let store = store::Store::open(&state_dir.join("state.db")).await?;
    let token = profile::ensure_admin_token(&store, state_dir).await?;

    let puller = Puller::new(
        ContentStore::open(state_dir.join("images"))?,
        PullOptions {
            insecure_registries: config.insecure_registries.clone(),
            mirrors: config.registry_mirrors.clone(),
            credentials: RegistryCredentials::from_env(),
        },
    );
    let runtime = OciRuntime::new(
        config.runtime,
        config
            .runtime_binary
            .clone()
            .unwrap_or_else(|| config.runtime.default_binary().into()),
        state_dir.join("runtime").join(config.runtime.as_str()),
    );
    let node = node::LocalNode::new(node::LocalNodeConfig {
        containers_dir: state_dir.join("containers"),
        puller,
        network,
        runtime,
        shim_exe: config.shim_exe.clone(),
        berth_exe: config.berth_exe.clone(),
        build_ca: config.build_ca_bundle.clone(),
        dns: config.dns.clone(),
        code_dir: state_dir.join("code"),
        max_code_bytes: config.max_code_bytes,
        volumes_dir: state_dir.join("volumes"),
        seccomp: config.seccomp,
        conda_cache: state_dir.join("conda"),
        buildah_dir: state_dir.join("buildah"),
        init_binary: find_init(config.init_binary.as_deref())?,
        warm_networks: config.warm_networks,
    })?;
    if !config.seccomp {
        tracing::warn!(
            "runc pods start with no seccomp filter (--unsafe-no-seccomp): never run untrusted code on this server"
        );
    }
    let secrets = secrets::Secrets::open(store.clone(), state_dir)?;

    let api_listener = bind("API", config.api_listen).await?;
    let ingress_listener = bind_dual_stack("ingress", config.ingress_listen)?;
    let ingress_addr = ingress_listener
        .local_addr()
        .unwrap_or(config.ingress_listen);
    let api_addr = api_listener.local_addr().unwrap_or(config.api_listen);
    let (tls_listener, tls_addr, certificates) = match &config.tls {
        Some(tls) => {
            let listener = bind_dual_stack("HTTPS ingress", tls.listen)?;
            let addr = listener.local_addr().unwrap_or(tls.listen);
            let certificates = tls::certificates(&tls.source, state_dir).await?;
            (Some(listener), Some(addr), Some(certificates))
        }
        None => (None, None, None),
    };
    let (url_scheme, url_port) = match tls_addr {
        Some(addr) => ("https", addr.port()),
        None => ("http", ingress_addr.port()),
    };

    let routes = Arc::new(berth_proxy::RouteTable::new());
    let metrics = Arc::new(berth_proxy::ProxyMetrics::default());
    let lifecycle = lifecycle::Lifecycle::new(
        store.clone(),
        node.clone(),
        routes.clone(),
        lifecycle::LifecycleConfig {
            domain: config.domain.clone(),
            url_scheme,
            url_port,
            stop_grace: config.stop_timeout,
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
        images: images::Images::new(node.clone(), store.clone()),
        storage: storage::Storage::new(node.clone(), store.clone()),
        secrets,
        tokens: profile::Tokens::new(store.clone()),
        access: access.clone(),
        metrics: metrics.clone(),
        max_code_bytes: config.max_code_bytes,
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
                ingress,
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
    // Shutdown lets open requests finish, but a followed log or a build stream could last
    // for ever: after a grace period the server stops regardless.
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let signalled = async move {
        shutdown.await;
        let _ = stopping_tx.send(());
    };
    let serving = axum::serve(api_listener, app).with_graceful_shutdown(signalled);
    let served = tokio::select! {
        served = serving.into_future() => served,
        _ = async {
            let _ = stopping_rx.await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::info!("requests still open after {SHUTDOWN_GRACE:?}; stopping anyway");
            Ok(())
        }
    };

    if config.stop_pods_on_exit {
        match lifecycle.stop_all().await {
            Ok(n) => tracing::info!("stopped {n} pods (--stop-pods-on-exit)"),
            Err(e) => tracing::error!("stopping the pods: {e}"),
        }
    }
    for threads in ingress_threads {
        let _ = tokio::task::spawn_blocking(move || threads.stop()).await;
    }
    monitor.abort();
    if let Err(e) = served {
        tracing::error!("API server: {e}");
    }
    node.release_host_resources();
    store.close().await;
    if config.stop_pods_on_exit {
        tracing::info!("berth server stopped");
    } else {
        tracing::info!(
            "berth server stopped; running pods keep running and are adopted on the next start"
        );
    }
    Ok(())
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
