//! The node's one sandbox path, shared by pods and build steps: a network namespace from
//! berth-net, then the root filesystem, `/etc` files and bundle from berth-runtime; and the
//! one teardown that undoes both, whatever state a start or a crash left.

use std::net::IpAddr;
use std::path::PathBuf;

use berth_net::Network;
use berth_runtime::sandbox::{self, SandboxDir, SandboxPlan};
use berth_runtime::{BindMount, OciRuntime, ProcessPlan, ResourceLimits, RuntimeKind};

use super::dns::Resolvers;
use super::id_ranges::IdRanges;
use super::runtimes::Runtimes;
use super::NodeError;

/// All containers' cgroups live under this one.
const CGROUP_PARENT: &str = "/berth";

/// What differs between a pod and a build step; the rest is the same for both.
pub struct SandboxRequest {
    pub layers: Vec<PathBuf>,
    /// A build step's own upper directory, which becomes its layer; `None` for pods.
    pub upper: Option<PathBuf>,
    pub hostname: String,
    pub process: ProcessPlan,
    pub limits: ResourceLimits,
    /// Host directories mounted in: a pod's code and volumes; none for build steps.
    pub binds: Vec<BindMount>,
    /// The node's default when `None`.
    pub runtime: Option<RuntimeKind>,
    pub egress: berth_net::Egress,
    pub read_only_rootfs: bool,
    pub disk_mib: Option<u64>,
    /// A user namespace of its own (runc pods; build steps never).
    pub user_namespace: bool,
}

/// A sandbox ready to start.
pub struct Prepared {
    pub dir: SandboxDir,
    pub addrs: Vec<IpAddr>,
    pub runtime: OciRuntime,
}

pub struct Sandboxes {
    containers_dir: PathBuf,
    network: Network,
    runtimes: Runtimes,
    resolvers: Resolvers,
    id_ranges: IdRanges,
    seccomp: bool,
    /// This host can give pods user namespaces (probed at start).
    userns: bool,
}

impl Sandboxes {
    pub fn new(
        containers_dir: PathBuf,
        network: Network,
        runtimes: Runtimes,
        resolvers: Resolvers,
        seccomp: bool,
    ) -> Result<Self, NodeError> {
        std::fs::create_dir_all(&containers_dir).map_err(NodeError::io(&containers_dir))?;
        let id_ranges = IdRanges::new(containers_dir.with_file_name("userns"))?;
        let userns = match berth_runtime::idmap::probe(&containers_dir) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("runc pods will run without a user namespace of their own: {e}");
                false
            }
        };
        Ok(Sandboxes {
            userns,
            id_ranges,
            seccomp,
            containers_dir,
            network,
            runtimes,
            resolvers,
        })
    }

    /// The default runtime (build steps always use it).
    pub fn runtime(&self) -> &OciRuntime {
        self.runtimes.default_runtime()
    }

    pub fn runtimes(&self) -> &Runtimes {
        &self.runtimes
    }

    /// The runtime that runs (or ran) container `id`.
    pub fn runtime_of(&self, id: &str) -> &OciRuntime {
        self.runtimes.of(self.dir(id).path())
    }

    pub fn containers_dir(&self) -> &std::path::Path {
        &self.containers_dir
    }

    pub fn dir(&self, id: &str) -> SandboxDir {
        SandboxDir::new(self.containers_dir.join(id))
    }

    pub fn cgroups_path(id: &str) -> String {
        format!("{CGROUP_PARENT}/{id}")
    }

    /// Network, then root filesystem, `/etc` files and bundle. On error nothing is left.
    pub fn prepare(&self, id: &str, req: SandboxRequest) -> Result<Prepared, NodeError> {
        match self.prepare_inner(id, req) {
            Ok(prepared) => Ok(prepared),
            Err(error) => match self.remove(id) {
                Ok(()) => Err(error),
                Err(cleanup) => Err(NodeError::WithCleanup {
                    action: format!("preparing {id}"),
                    error: Box::new(error),
                    cleanup: Box::new(cleanup),
                }),
            },
        }
    }

    fn prepare_inner(&self, id: &str, req: SandboxRequest) -> Result<Prepared, NodeError> {
        let dir = self.dir(id);
        let kind = req.runtime.unwrap_or(self.runtimes.default_kind());
        let runtime = self
            .runtimes
            .get(kind)
            .ok_or(NodeError::RuntimeMissing(kind.as_str()))?
            .clone();
        // runc pods only: gVisor's Sentry is the pod's kernel, its root no host root.
        let user_namespace = if req.user_namespace && kind == RuntimeKind::Runc && self.userns {
            Some(self.id_ranges.allocate(id)?)
        } else {
            None
        };
        let pod_net = match user_namespace {
            Some(range) => {
                sandbox::pin_namespaces(&dir, range, &berth_net::netns_path(id))?;
                self.network.setup_in(id, &req.egress)?
            }
            None => self.network.setup(id, &req.egress)?,
        };
        let addrs: Vec<IpAddr> = pod_net
            .ipv4
            .map(IpAddr::V4)
            .into_iter()
            .chain(pod_net.ipv6.map(IpAddr::V6))
            .collect();
        sandbox::prepare(&SandboxPlan {
            id: id.to_string(),
            dir: dir.clone(),
            layers: req.layers,
            upper: req.upper,
            netns: pod_net.netns,
            hostname: req.hostname,
            addrs: addrs.clone(),
            resolv_conf: self.resolvers.resolv_conf(),
            process: req.process,
            limits: req.limits,
            binds: req.binds,
            cgroups_path: Self::cgroups_path(id),
            seccomp: kind == RuntimeKind::Runc && self.seccomp,
            tmp_on_disk: kind == RuntimeKind::Gvisor && !req.read_only_rootfs,
            read_only_rootfs: req.read_only_rootfs,
            disk_mib: req.disk_mib,
            user_namespace,
        })?;
        Runtimes::record(dir.path(), kind).map_err(NodeError::io(dir.path()))?;
        Ok(Prepared {
            dir,
            addrs,
            runtime,
        })
    }

    /// A network namespace with open egress for a builder that runs its own containers
    /// (a Dockerfile build's `RUN` steps); [`Sandboxes::remove`] takes it down.
    pub fn open_network(&self, id: &str) -> Result<PathBuf, NodeError> {
        Ok(self.network.setup(id, &berth_net::Egress::Open)?.netns)
    }

    /// Removes the runtime state, mounts and network of `id`. Idempotent.
    pub fn remove(&self, id: &str) -> Result<(), NodeError> {
        let mapped = sandbox::read_idmap_record(&self.dir(id)).ok().flatten();
        let fs = sandbox::remove(
            self.runtime_of(id),
            id,
            &self.dir(id),
            &Self::cgroups_path(id),
        );
        let net = self.network.teardown(id);
        if let (Ok(()), Some(record)) = (&fs, mapped) {
            self.id_ranges.release(id, record.host_start);
        }
        fs?;
        net?;
        Ok(())
    }

    /// On a clean shutdown with no pod left: removes the bridge and the containers' parent
    /// cgroup, so the host looks as it did before the server ran.
    pub fn release_host_resources(&self) {
        self.network.remove_bridge_if_unused();
        berth_runtime::remove_empty_cgroup(CGROUP_PARENT);
    }
}
