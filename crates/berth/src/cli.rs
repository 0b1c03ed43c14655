//! The command line, declared with clap; every verb has its own `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "Serverless containers on machines you own"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the berth server: API, ingress and node agent in one process; `berth server
    /// join-token` prints a token for a worker to join it.
    #[command(args_conflicts_with_subcommands = true)]
    Server(ServerArgs),
    /// Join this machine to a berth server as a worker (`--join ADDR --token T` the first
    /// time), then register what it offers, heartbeat, and run the pods the server places
    /// here until stopped (they keep running for the worker's next start).
    Worker(WorkerArgs),
    /// Launch a pod (from an image, or a Pod in a Python module) and print its URL once it runs.
    Run(RunArgs),
    /// Deploy the Pod in a Python module (app.py:pod) as a named deployment with a stable URL.
    Deploy(DeployArgs),
    /// List, stop, delete and read the logs of deployments.
    #[command(subcommand)]
    Deployment(DeploymentCommand),
    /// List and delete named volumes.
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Create, list and delete secrets (passed to pods as environment variables).
    #[command(subcommand)]
    Secret(SecretCommand),
    /// List, stop and read the logs of containers.
    #[command(subcommand)]
    Container(ContainerCommand),
    /// Build images from specs, list and prune the server's images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Open an interactive shell in a running container (bash if it has one, else sh), on
    /// this terminal; `exit` ends it.
    Shell(ShellArgs),
    /// List the machines that run pods: capacity, what their pods ask for, last heartbeat.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Print the path of berth's local CA certificate and how to trust it.
    Ca(CaArgs),
    /// Check this host for what berth needs (runtimes, CNI plugins, cgroups, overlayfs,
    /// iptables, pod subnets, DNS, free disk); one pass/warn/fail line each, exit 1 on a fail.
    Doctor(DoctorArgs),
    /// An OCI runtime in front of runc that adds berth's build variables to each
    /// container's process; buildah's runtime for Dockerfile builds (not for direct use).
    #[command(hide = true)]
    EnvRuntime(EnvRuntimeArgs),
}

#[derive(Args)]
pub struct EnvRuntimeArgs {
    /// The runtime to hand every call on to.
    #[arg(long)]
    pub runtime: PathBuf,
    /// NAME=VALUE lines to add to each container's environment.
    #[arg(long)]
    pub env_file: PathBuf,
    /// The runtime call itself, as the builder made it.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Args)]
pub struct ServerArgs {
    #[command(subcommand)]
    pub action: Option<ServerAction>,
    /// Where berth keeps its database, images and container state.
    #[arg(long, default_value = "/var/lib/berth")]
    pub state_dir: PathBuf,
    /// Keep the control plane's state in this database instead of `state.db` in the state
    /// directory: `postgres://USER[:PASSWORD]@HOST[:PORT]/DB` (or `?host=/socket/dir`), which
    /// several machines can share.
    #[arg(long, env = "BERTH_DATABASE_URL", value_parser = database_url)]
    pub database_url: Option<String>,
    /// Address of the HTTP API.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub api_listen: SocketAddr,
    /// Address of the HTTP ingress that serves pod URLs; the default `[::]` takes IPv4 too.
    #[arg(long, default_value = "[::]:80")]
    pub ingress_listen: SocketAddr,
    /// Serve pod URLs over HTTPS with berth's own CA (made on first start; `berth ca` tells
    /// clients how to trust it). Implied by --ingress-tls-listen, --tls-cert and --acme-email.
    #[arg(long)]
    pub tls: bool,
    /// Address of the HTTPS ingress [default with TLS on: [::]:443]. The plain ingress then
    /// redirects to it (308), ACME challenges aside.
    #[arg(long, value_name = "ADDR")]
    pub ingress_tls_listen: Option<SocketAddr>,
    /// A certificate chain (PEM) to serve instead of the local CA's, e.g. a wildcard for
    /// *.<domain>; reloaded when the file changes.
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "acme_email"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert; reloaded when the file changes.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Get certificates from ACME (Let's Encrypt by default) for each pod host name, on its
    /// first HTTPS request; the domain must resolve to this host and port 80 reach it.
    #[arg(long, value_name = "EMAIL")]
    pub acme_email: Option<String>,
    /// ACME directory URL [default: Let's Encrypt's production directory].
    #[arg(long, value_name = "URL", requires = "acme_email")]
    pub acme_directory: Option<String>,
    /// A CA (PEM) to trust for the ACME directory's own HTTPS, for private or test servers.
    #[arg(long, value_name = "FILE", requires = "acme_email")]
    pub acme_directory_ca: Option<PathBuf>,
    /// The most MiB a request body may carry through the ingress; past it, 413.
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    pub max_request_body_mib: u64,
    /// Open connections one pod may hold through the ingress; past it, 503 with Retry-After.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub max_pod_connections: usize,
    /// Serve pod traffic on N event-loop threads of its own (about 30% faster per request,
    /// see bench/ingress.sh); 0, the default, serves it on the server's shared runtime.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=1024))]
    pub ingress_threads: u16,
    /// Domain of pod URLs: <stub-id>-<port>.<domain>. `localhost` works without DNS.
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    #[command(flatten)]
    pub node: NodeArgs,
    /// Seconds between the stop signal and SIGKILL when stopping a pod that sets no grace
    /// of its own.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub stop_timeout: u64,
    /// Stop every pod when the server stops (all at once, each with its grace), instead of
    /// leaving them running for the next start to adopt.
    #[arg(long)]
    pub stop_pods_on_exit: bool,
    /// Seconds a stopping server (SIGTERM) gives open API requests, ingress connections and
    /// pod starts in flight before it exits anyway.
    #[arg(long, default_value_t = 10, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_grace: u64,
    /// Seconds the old process of a hot restart (SIGUSR2) keeps serving the connections it
    /// holds, open websockets included, after the new process took over.
    #[arg(long, default_value_t = 300, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(0..=86400))]
    pub upgrade_drain: u64,
    /// Write the server's own log to FILE (appending) instead of stderr; past --log-max-mib it
    /// moves to FILE.1, replacing the one before. Without it, stderr (journald rotates it
    /// under the shipped systemd unit).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// With --log-file: MiB past which the server's log moves to FILE.1.
    #[arg(long, default_value_t = 64, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=1048576))]
    pub log_max_mib: u64,
    /// Pod starts in flight (from create to RUNNING, pulls included) past which creates are
    /// refused with 429 and Retry-After, so a burst cannot queue without bound.
    #[arg(long, default_value_t = 64, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=100000))]
    pub max_pending_starts: u64,
    /// Image builds in flight past which builds are refused with 429 and Retry-After.
    #[arg(long, default_value_t = 8, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10000))]
    pub max_pending_builds: u64,
    /// A label this node registers, KEY=VALUE (repeatable), shown by `berth node list`;
    /// for placing pods on a pool of machines once workers join.
    #[arg(long = "node-label", value_name = "KEY=VALUE", value_parser = berth_api::parse_node_label)]
    pub node_labels: Vec<(String, String)>,
    /// Take workers on this address (mutual TLS with berth's cluster CA, kept in the state
    /// directory); `berth server join-token` prints a token for one to join. Off by default.
    #[arg(long, value_name = "ADDR:PORT")]
    pub node_listen: Option<SocketAddr>,
    /// Place no pods on this machine: it runs the control plane, and pods go to the
    /// workers that joined it.
    #[arg(long)]
    pub no_pods: bool,
    /// Seconds a request that wakes a scaled-to-zero deployment waits for it before a 503
    /// with Retry-After.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub wake_timeout: u64,
}

/// How this machine runs pods, the same flags for `server` and `worker`.
#[derive(Args)]
pub struct NodeArgs {
    /// A registry (HOST:PORT) to reach over plain HTTP; repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
    /// Send pulls for a registry to a mirror, e.g. docker.io=HOST:PORT; repeatable.
    #[arg(long = "registry-mirror", value_name = "REGISTRY=HOST:PORT")]
    pub registry_mirrors: Vec<berth_image::RegistryMirror>,
    /// The OCI runtime for pods.
    #[arg(long, value_enum, default_value_t = RuntimeArg::Runc)]
    pub runtime: RuntimeArg,
    /// Path of the runtime binary (default: runc or runsc on PATH).
    #[arg(long)]
    pub runtime_binary: Option<PathBuf>,
    /// A container's log moves to container.log.1 past this many MiB (replacing the one
    /// before), so each pod keeps at most twice this on disk.
    #[arg(long, default_value_t = 16, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=1048576))]
    pub container_log_max_mib: u64,
    /// Hours an ended container's log is kept (readable with `berth container logs`) before
    /// it is removed; 0 keeps logs for ever.
    #[arg(long, default_value_t = 168, value_name = "HOURS", value_parser = clap::value_parser!(u64).range(0..=876000))]
    pub log_retention_hours: u64,
    /// The static init mounted into pods as PID 1 (default: /usr/bin/tini-static from
    /// Debian's tini, if present).
    #[arg(long, value_name = "PATH")]
    pub init_binary: Option<PathBuf>,
    /// Start runc pods with no seccomp filter. Only for measuring what the filter costs
    /// (bench/hardening.sh); never on a server that runs untrusted code.
    #[arg(long, hide = true)]
    pub unsafe_no_seccomp: bool,
    /// Pod networks (namespace, addresses, firewall rules) kept ready ahead of creates, so a
    /// create skips making one; 0 makes each on its create's path.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(0..=256))]
    pub warm_networks: u16,
    #[command(flatten)]
    pub network: PodNetworkArgs,
    /// CA bundle that build steps trust (for pip and curl behind a TLS-intercepting proxy);
    /// never baked into images. "none" leaves images with their own CAs.
    #[arg(long, default_value = "/etc/ssl/certs/ca-certificates.crt")]
    pub build_ca_bundle: String,
    /// DNS resolver for pods; repeatable. Default: the host's non-loopback resolvers, else
    /// 8.8.8.8 and 8.8.4.4 (logged when it comes to that).
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<std::net::IpAddr>,
    /// The most MiB an uploaded working directory may hold.
    #[arg(long, default_value_t = 100, value_name = "MIB")]
    pub max_code_mib: u64,
}

#[derive(Args)]
pub struct CaArgs {
    /// The server's state directory, when the client profile does not name the CA.
    #[arg(long, default_value = "/var/lib/berth")]
    pub state_dir: PathBuf,
}

/// The pod network flags, shared by `server` and `doctor` (which checks them).
#[derive(Args)]
pub struct PodNetworkArgs {
    /// IPv4 subnet for pod addresses.
    #[arg(long, default_value = berth_net::DEFAULT_SUBNET_V4)]
    pub pod_subnet_v4: ipnet::Ipv4Net,
    /// IPv6 subnet for pod addresses; "none" for IPv4 only.
    #[arg(long, default_value = berth_net::DEFAULT_SUBNET_V6)]
    pub pod_subnet_v6: String,
    /// Name of the bridge that connects pods to the host.
    #[arg(long, default_value = berth_net::DEFAULT_BRIDGE)]
    pub bridge: String,
    /// Directory of the CNI plugin binaries.
    #[arg(long, default_value = "/usr/lib/cni")]
    pub cni_bin_dir: PathBuf,
}

impl PodNetworkArgs {
    /// The network configuration these flags give, with `state_dir` for its own state.
    pub fn config(&self, state_dir: PathBuf) -> anyhow::Result<berth_net::NetConfig> {
        let subnet_v6 =
            match self.pod_subnet_v6.as_str() {
                "none" | "" => None,
                text => Some(text.parse().map_err(|_| {
                    anyhow::anyhow!("--pod-subnet-v6 {text:?} is not an IPv6 subnet")
                })?),
            };
        Ok(berth_net::NetConfig {
            bridge: self.bridge.clone(),
            subnet_v4: self.pod_subnet_v4,
            subnet_v6,
            cni_bin_dir: self.cni_bin_dir.clone(),
            state_dir,
        })
    }
}

#[derive(Args)]
pub struct DoctorArgs {
    /// The state directory the server uses (its free disk is checked).
    #[arg(long, default_value = "/var/lib/berth")]
    pub state_dir: PathBuf,
    /// The server's pod network flags: the CNI plugins and subnets are checked.
    #[command(flatten)]
    pub network: PodNetworkArgs,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum RuntimeArg {
    Runc,
    Gvisor,
}

impl RuntimeArg {
    pub fn name(self) -> &'static str {
        match self {
            RuntimeArg::Runc => "runc",
            RuntimeArg::Gvisor => "gvisor",
        }
    }
}

/// An image described by flags, built on the server; every step is cached.
#[derive(Args, Default, Clone)]
pub struct BuildArgs {
    /// Image to build on (default: berth's Debian base with python3).
    #[arg(long, value_name = "REF")]
    pub base_image: Option<String>,
    /// Python to use for packages, like python3.11.
    #[arg(long, value_name = "VERSION")]
    pub python_version: Option<String>,
    /// Python packages to install, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "PKG")]
    pub python_packages: Vec<String>,
    /// A requirements.txt whose packages to install.
    #[arg(long, value_name = "FILE")]
    pub requirements: Option<PathBuf>,
    /// Conda packages to install into /opt/conda (first on PATH), comma-separated match
    /// specs like numpy or "gdal>=3.8"; no conda is needed in the image.
    #[arg(long, value_delimiter = ',', value_name = "SPEC")]
    pub conda_packages: Vec<String>,
    /// Channels for --conda-packages by priority, comma-separated: names (conda-forge, the
    /// default), https:// or file:// URLs.
    #[arg(long, value_delimiter = ',', value_name = "CHANNEL")]
    pub conda_channels: Vec<String>,
    /// A shell command to run in the image; repeatable, run in order.
    #[arg(long = "command", value_name = "CMD")]
    pub commands: Vec<String>,
    /// Environment variable NAME=VALUE for the build steps and the image; repeatable.
    #[arg(long = "build-env", value_name = "NAME=VALUE")]
    pub build_env: Vec<String>,
    /// Working directory of the image.
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    #[command(flatten)]
    pub dockerfile: DockerfileArgs,
}

/// Building from a Dockerfile instead of the step flags.
#[derive(Args, Clone, Default)]
pub struct DockerfileArgs {
    /// Build the image from this Dockerfile (on the server, with buildah) instead of the
    /// other build flags.
    #[arg(long, value_name = "PATH")]
    pub dockerfile: Option<PathBuf>,
    /// The build context COPY and ADD see (default: the Dockerfile's directory); its
    /// .dockerignore is honoured.
    #[arg(long, value_name = "DIR", requires = "dockerfile")]
    pub context: Option<PathBuf>,
    /// A value for one of the Dockerfile's ARGs; repeatable.
    #[arg(long = "build-arg", value_name = "NAME=VALUE", requires = "dockerfile")]
    pub build_args: Vec<String>,
}

impl BuildArgs {
    pub fn is_empty(&self) -> bool {
        self.base_image.is_none()
            && self.python_version.is_none()
            && self.python_packages.is_empty()
            && self.requirements.is_none()
            && self.conda_packages.is_empty()
            && self.conda_channels.is_empty()
            && self.commands.is_empty()
            && self.build_env.is_empty()
            && self.workdir.is_none()
            && self.dockerfile.dockerfile.is_none()
    }
}

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Build an image from a spec, streaming the build log.
    Build(Box<ImageBuildArgs>),
    /// List the images in the server's store.
    List(ImageListArgs),
    /// Remove images and layers that nothing uses (the build cache stays).
    Prune,
}

#[derive(Args)]
pub struct ImageBuildArgs {
    #[command(flatten)]
    pub build: BuildArgs,
    /// Push the built image to this registry reference.
    #[arg(long, value_name = "REF")]
    pub push: Option<String>,
}

#[derive(Args)]
pub struct ImageListArgs {
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Args)]
pub struct RunArgs {
    /// A Pod in a Python module, as FILE.py:NAME (default NAME: pod), run with the Python
    /// SDK instead of the flags.
    #[arg(value_name = "APP", conflicts_with_all = ["image", "entrypoint"])]
    pub app: Option<String>,
    /// Registry image to run, e.g. jupyter/base-notebook:latest or 127.0.0.1:5000/app:1.
    /// Without it, the image is built from the build flags (on the default base).
    #[arg(long, conflicts_with = "base_image")]
    pub image: Option<String>,
    #[command(flatten)]
    pub build: BuildArgs,
    /// Ports to expose, comma-separated (default: the image's EXPOSE ports).
    #[arg(long, value_delimiter = ',')]
    pub ports: Vec<u32>,
    /// A port to expose; repeatable.
    #[arg(long = "port")]
    pub port: Vec<u32>,
    /// Cores (0.1-64) or millicores ("1500m").
    #[arg(long)]
    pub cpu: Option<String>,
    /// MiB, or with a unit: 512Mi, 1Gi, 1G.
    #[arg(long)]
    pub memory: Option<String>,
    /// Cap what the pod may write to its root filesystem: MiB, or with a unit (512Mi, 10Gi).
    #[arg(long, value_name = "SIZE")]
    pub disk: Option<String>,
    /// Environment variable NAME=VALUE; repeatable.
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// A stored secret passed as the environment variable of the same name; repeatable.
    #[arg(long = "secret", value_name = "NAME")]
    pub secrets: Vec<String>,
    /// A named volume NAME:/PATH, created on first use; repeatable.
    #[arg(long = "volume", value_name = "NAME:PATH")]
    pub volumes: Vec<String>,
    /// Seconds without connections before the pod stops; -1 keeps it up.
    #[arg(long, allow_negative_numbers = true)]
    pub keep_warm_seconds: Option<i64>,
    /// Make the pod's URLs need a token: the API token, or one from `berth container token`.
    #[arg(long)]
    pub authorized: bool,
    /// The OCI runtime: gvisor puts a user-space kernel between the code and the host (for
    /// untrusted code); the server's default when not given.
    #[arg(long, value_enum)]
    pub runtime: Option<RuntimeArg>,
    /// Cut all egress, DNS included: the pod only answers through its URL.
    #[arg(long, conflicts_with = "allow_list")]
    pub block_network: bool,
    /// Allow egress only to these CIDRs (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "CIDR,...")]
    pub allow_list: Vec<String>,
    /// Mount the image's root filesystem read-only (/tmp becomes an in-memory tmpfs).
    #[arg(long)]
    pub read_only: bool,
    /// Run a runc pod without its own user namespace: its root is the host's root. By
    /// default a pod's ids map to an unprivileged host range of its own.
    #[arg(long)]
    pub privileged_user: bool,
    /// Run an init (tini) as PID 1 that passes signals on to the entrypoint and reaps
    /// orphaned processes: the default, unless the image's entrypoint is an init itself.
    #[arg(long, overrides_with = "no_init")]
    pub init: bool,
    /// Run the entrypoint itself as PID 1.
    #[arg(long, overrides_with = "init")]
    pub no_init: bool,
    /// The signal a stop sends first, like SIGINT or QUIT (default: the image's
    /// STOPSIGNAL, else SIGTERM).
    #[arg(long, value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Time between the stop signal and SIGKILL: seconds, or with a unit (90s, 2m)
    /// (default: the server's --stop-timeout).
    #[arg(long, value_name = "DURATION", value_parser = crate::duration::parse_seconds)]
    pub stop_grace: Option<u64>,
    /// Print the created container as JSON instead of progress lines.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Command and arguments to run instead of the image's own (must come last).
    #[arg(long, num_args = 1.., allow_hyphen_values = true, value_name = "CMD")]
    pub entrypoint: Option<Vec<String>>,
}

#[derive(Args)]
pub struct DeployArgs {
    /// The Pod to deploy: FILE.py:NAME (default NAME: pod).
    #[arg(value_name = "APP")]
    pub app: String,
    /// Deployment name (default: the Pod's name=); a DNS label, used in the URL.
    #[arg(long)]
    pub name: Option<String>,
    /// Run the image of this Dockerfile instead of the Pod's own image.
    #[command(flatten)]
    pub dockerfile: DockerfileArgs,
}

#[derive(Subcommand)]
pub enum DeploymentCommand {
    /// List deployments with their version, state and URLs.
    List(DeploymentListArgs),
    /// Stop a deployment's containers; its URL answers 404 until the next deploy.
    Stop(NameArg),
    /// Stop a deployment and forget it and its versions.
    Delete(NameArg),
    /// Print the output of the deployment's newest container.
    Logs(DeploymentLogsArgs),
}

#[derive(Args)]
pub struct DeploymentListArgs {
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Args)]
pub struct NameArg {
    pub name: String,
}

#[derive(Args)]
pub struct DeploymentLogsArgs {
    pub name: String,
    /// Keep printing new output until the container ends.
    #[arg(long, short)]
    pub follow: bool,
}

#[derive(Subcommand)]
pub enum VolumeCommand {
    /// List volumes and their sizes.
    List(DeploymentListArgs),
    /// Delete a volume and its files (refused while a pod uses it).
    Delete(NameArg),
}

#[derive(Subcommand)]
pub enum ServerAction {
    /// Print a token that lets workers join the server for `--ttl`, with the `berth worker`
    /// command that uses it; the token alone is the last line. The server needs
    /// `--node-listen`.
    JoinToken(JoinTokenArgs),
}

#[derive(Args)]
pub struct JoinTokenArgs {
    /// How long the token lets workers join: seconds, or with a unit (90s, 10m, 2h, 7d).
    #[arg(long, default_value = "1h", value_parser = crate::duration::parse_seconds)]
    pub ttl: u64,
}

#[derive(Args)]
pub struct WorkerArgs {
    /// The server's node port (its `--node-listen`), HOST:PORT; needed to join, not after.
    #[arg(long, value_name = "ADDR:PORT")]
    pub join: Option<String>,
    /// The join token `berth server join-token` printed; needed to join, not after.
    #[arg(long, env = "BERTH_JOIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Where the worker keeps its certificate and key once joined.
    #[arg(long, default_value = "/var/lib/berth-worker")]
    pub state_dir: PathBuf,
    /// A label this worker registers, KEY=VALUE (repeatable), for placing pods on pools.
    #[arg(long = "node-label", value_name = "KEY=VALUE", value_parser = berth_api::parse_node_label)]
    pub node_labels: Vec<(String, String)>,
    /// Where the control plane sends this worker's pod operations and pod traffic (mutual
    /// TLS: only the control plane's certificate gets in); it is reached at the address
    /// the worker's heartbeats come from.
    #[arg(long, default_value = "0.0.0.0:7444", value_name = "ADDR:PORT")]
    pub agent_listen: std::net::SocketAddr,
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Subcommand)]
pub enum NodeCommand {
    /// List nodes: status, CPU and memory asked for of what each offers, pods, runtimes,
    /// labels and last heartbeat.
    List(DeploymentListArgs),
    /// Forget a worker that has left and revoke its certificate (it stops at its next
    /// heartbeat); refused for the server's own node and while pods are placed on it.
    Delete(NodeIdArg),
}

#[derive(Args)]
pub struct NodeIdArg {
    /// The node id (`berth node list`).
    pub id: String,
}

#[derive(Subcommand)]
pub enum SecretCommand {
    /// Store a secret, encrypted on the server; the value is read from stdin when omitted.
    Create(SecretCreateArgs),
    /// List secret names (values are never shown).
    List(DeploymentListArgs),
    /// Delete a secret.
    Delete(NameArg),
}

#[derive(Args)]
pub struct SecretCreateArgs {
    /// Also the environment variable's name in pods.
    pub name: String,
    pub value: Option<String>,
}

#[derive(Subcommand)]
pub enum ContainerCommand {
    /// List containers (running and starting; --all includes ended ones).
    List(ListArgs),
    /// Stop containers: the stop signal (SIGTERM unless the pod or its image names
    /// another), a grace period, then SIGKILL. Several are stopped at once (up to 32 at a
    /// time), each result printed as it comes; pick them by id, --all, --deployment or
    /// --image.
    Stop(StopArgs),
    /// Print a container's output.
    Logs(LogsArgs),
    /// Mint a token that opens one port of an authorized pod's URL until it expires; the
    /// token alone is the last line printed.
    Token(TokenArgs),
    /// Revoke a token minted by `berth container token`.
    Revoke(RevokeArgs),
    /// Run a command in a running container; its output streams back and its exit code
    /// becomes berth's own.
    Exec(ExecArgs),
    /// Copy a file or a directory into or out of a running container, as `docker cp` does:
    /// one side is `<container-id>:<path>`, the other a local path (`-` is stdout when
    /// copying a file out). Paths in the container resolve as it sees them and never outside
    /// it; symlinks and special files in a copied directory are skipped with a note.
    Cp(CpArgs),
}

#[derive(Args)]
pub struct CpArgs {
    /// The file or directory to copy: a local path or `<container-id>:<absolute path>`.
    pub src: String,
    /// Where it goes; an existing directory (or a path ending in `/`) receives it under its
    /// own name.
    pub dst: String,
}

#[derive(Args)]
pub struct ExecArgs {
    /// Container id.
    pub id: String,
    /// An environment variable K=V for the command; repeatable.
    #[arg(long = "env", short = 'e', value_name = "K=V")]
    pub env: Vec<String>,
    /// Working directory of the command (default: the container's).
    #[arg(long, short = 'w', value_name = "DIR")]
    pub workdir: Option<String>,
    /// Stop the command after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Keep stdin open to the command (with -t: `-it` for an interactive program).
    #[arg(long, short = 'i')]
    pub interactive: bool,
    /// Run the command on a terminal, driven from this one (resizes follow); stdout and
    /// stderr then arrive together, as on any terminal.
    #[arg(long, short = 't')]
    pub tty: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Args)]
pub struct ShellArgs {
    /// Container id.
    pub id: String,
    /// The shell to run instead of bash or sh.
    #[arg(long, value_name = "PATH")]
    pub shell: Option<String>,
    /// An environment variable K=V for the shell; repeatable.
    #[arg(long = "env", short = 'e', value_name = "K=V")]
    pub env: Vec<String>,
    /// Working directory of the shell (default: the container's).
    #[arg(long, short = 'w', value_name = "DIR")]
    pub workdir: Option<String>,
}

#[derive(Args)]
pub struct TokenArgs {
    /// Container id.
    pub id: String,
    /// The port the token opens.
    #[arg(long)]
    pub port: u32,
    /// How long the token works: seconds, or with a unit (90s, 10m, 2h, 7d).
    #[arg(long, default_value = "1h", value_parser = crate::duration::parse_seconds)]
    pub ttl: u64,
}

#[derive(Args)]
pub struct RevokeArgs {
    /// Container id.
    pub id: String,
    /// The token's id (tok-...), as `berth container token` printed it.
    pub token_id: String,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Args)]
pub struct ListArgs {
    /// Include stopped, exited and failed containers.
    #[arg(long)]
    pub all: bool,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("which").required(true).multiple(true)
    .args(["ids", "all", "deployment", "image"])))]
pub struct StopArgs {
    /// Container ids.
    pub ids: Vec<String>,
    /// Every container that is running or starting.
    #[arg(long, conflicts_with = "ids")]
    pub all: bool,
    /// The running and starting containers of this deployment (its URL wakes it again; `berth
    /// deploy stop` stops the deployment itself).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["ids", "all"])]
    pub deployment: Option<String>,
    /// The running and starting containers of this image, as it was asked for.
    #[arg(long, value_name = "REF", conflicts_with_all = ["ids", "all"])]
    pub image: Option<String>,
    /// Time between the stop signal and SIGKILL: seconds, or with a unit (90s, 2m) (default:
    /// each pod's own, else the server's).
    #[arg(long, value_parser = crate::duration::parse_seconds)]
    pub grace: Option<u64>,
    /// Return once the stop is requested, without waiting for it to finish.
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Args)]
pub struct LogsArgs {
    /// Container id.
    pub id: String,
    /// Keep printing new output until the container ends.
    #[arg(long, short)]
    pub follow: bool,
    /// Show each line's time and stream.
    #[arg(long)]
    pub timestamps: bool,
}

/// A `--database-url`: PostgreSQL or SQLite, checked before anything starts.
fn database_url(text: &str) -> Result<String, String> {
    berth_server::check_database_url(text).map(|()| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_an_app_or_an_entrypoint_with_its_own_flags() {
        let cli = Cli::try_parse_from([
            "berth",
            "run",
            "--python-packages",
            "six",
            "--entrypoint",
            "python",
            "-c",
            "import six",
        ])
        .expect("parses");
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(
            run.entrypoint,
            Some(vec!["python".into(), "-c".into(), "import six".into()])
        );
        assert_eq!(run.app, None);
        let cli = Cli::try_parse_from(["berth", "run", "app.py:pod"]).expect("parses");
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.app.as_deref(), Some("app.py:pod"));
    }
}
