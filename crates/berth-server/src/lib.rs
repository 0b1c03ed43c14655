//! The control plane: HTTP API, state store, lifecycle and the node agent, run together by
//! `berth server`.

mod api;
mod images;
mod lifecycle;
mod node;
mod profile;
mod spec;
mod state;
mod store;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_image::{ContentStore, PullOptions, Puller, RegistryCredentials, RegistryMirror};
use berth_net::{NetConfig, Network};
use berth_runtime::{OciRuntime, RuntimeKind};
use ipnet::{Ipv4Net, Ipv6Net};

pub use api::openapi_document;
pub use profile::{default_profile_path, ClientProfile, PROFILE_ENV};

/// How long a stopping server waits for open API requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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
    #[error("the {0} stopped unexpectedly")]
    Crashed(&'static str),
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
    pub subnet_v4: Ipv4Net,
    pub subnet_v6: Option<Ipv6Net>,
    pub bridge: String,
    pub cni_bin_dir: PathBuf,
    /// The berth binary, run as `berth shim` for each container.
    pub shim_exe: PathBuf,
    pub profile_path: PathBuf,
    /// The CA bundle build steps trust (not baked into images); `None` for the image's own.
    pub build_ca_bundle: Option<PathBuf>,
    /// Resolvers for pods; empty to follow the host's.
    pub dns: Vec<std::net::IpAddr>,
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
        build_ca: config.build_ca_bundle.clone(),
        dns: config.dns.clone(),
    })?;

    let api_listener = bind("API", config.api_listen).await?;
    let ingress_listener = bind("ingress", config.ingress_listen).await?;
    let ingress_addr = ingress_listener
        .local_addr()
        .unwrap_or(config.ingress_listen);
    let api_addr = api_listener.local_addr().unwrap_or(config.api_listen);

    let routes = Arc::new(berth_proxy::RouteTable::new());
    let metrics = Arc::new(berth_proxy::ProxyMetrics::default());
    let lifecycle = lifecycle::Lifecycle::new(
        store.clone(),
        node.clone(),
        routes.clone(),
        lifecycle::LifecycleConfig {
            domain: config.domain.clone(),
            url_port: ingress_addr.port(),
            stop_grace: config.stop_timeout,
        },
    );
    lifecycle.recover().await?;
    let monitor = lifecycle.spawn_monitor();

    let gateway = profile::gateway_url(api_addr);
    profile::write_profile(
        &config.profile_path,
        &ClientProfile {
            gateway: gateway.clone(),
            token,
        },
    )?;

    let app = api::router(Arc::new(api::AppState {
        lifecycle: lifecycle.clone(),
        images: images::Images::new(node.clone(), store.clone()),
        tokens: profile::Tokens::new(store.clone()),
        metrics: metrics.clone(),
    }));
    let ingress = berth_proxy::Ingress::new(config.domain.clone(), routes, metrics)
        .with_route_miss(lifecycle.clone());
    let ingress = tokio::spawn(berth_proxy::serve(ingress_listener, Arc::new(ingress)));
    tracing::info!(
        "berth server ready: API {gateway}, ingress http://<stub-id>-<port>.{}:{} (client profile {})",
        config.domain,
        ingress_addr.port(),
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

    ingress.abort();
    monitor.abort();
    if let Err(e) = served {
        tracing::error!("API server: {e}");
    }
    node.release_host_resources();
    store.close().await;
    tracing::info!(
        "berth server stopped; running pods keep running and are adopted on the next start"
    );
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

fn create_private_dir(path: &std::path::Path) -> Result<(), ServerError> {
    use std::os::unix::fs::PermissionsExt;
    let err = |source| ServerError::StateDir {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(err)
}
