//! The node's one sandbox path, shared by pods and build steps: a network namespace from
//! berth-net, then the root filesystem, `/etc` files and bundle from berth-runtime; and the
//! one teardown that undoes both, whatever state a start or a crash left.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use berth_net::{Network, PodNetwork};
use berth_runtime::sandbox::{self, SandboxDir, SandboxPlan};
use berth_runtime::{BindMount, OciRuntime, ProcessPlan, ResourceLimits, RuntimeKind};

use super::dns::Resolvers;
use super::id_ranges::IdRanges;
use super::runtimes::Runtimes;
use super::warm::{self, WarmEntry, WarmPool};
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
    /// How long the network took (about nothing when a ready one was taken).
    pub network_took: Duration,
    /// How long the root filesystem, `/etc` files and bundle took.
    pub rootfs_took: Duration,
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
    warm: WarmPool,
}

impl Sandboxes {
    pub fn new(
        containers_dir: PathBuf,
        network: Network,
        runtimes: Runtimes,
        resolvers: Resolvers,
        seccomp: bool,
        warm_networks: usize,
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
        let warm = WarmPool::new(containers_dir.with_file_name("warm"), warm_networks, userns)?;
        let sandboxes = Sandboxes {
            warm,
            userns,
            id_ranges,
            seccomp,
            containers_dir,
            network,
            runtimes,
            resolvers,
        };
        for key in sandboxes.warm.leftovers() {
            sandboxes.remove_warm_dir(&key);
        }
        Ok(sandboxes)
    }

    /// Starts the thread that keeps [`WarmPool::target`] networks ready; none for 0.
    pub fn start_warming(self: &Arc<Self>) -> Result<(), NodeError> {
        if self.warm.target() == 0 {
            return Ok(());
        }
        let this = self.clone();
        let filler = std::thread::Builder::new()
            .name("warm-networks".into())
            .spawn(move || {
                while this.warm.wait_for_room() {
                    match this.make_warm() {
                        Ok(entry) => {
                            if let Err(entry) = this.warm.push(entry) {
                                this.drop_warm(entry);
                            }
                        }
                        Err(e) => {
                            tracing::warn!("making a network ahead: {e}; retrying in 10 s");
                            std::thread::sleep(Duration::from_secs(10));
                        }
                    }
                }
            })
            .map_err(NodeError::io("the warm-networks thread"))?;
        self.warm.set_filler(filler);
        Ok(())
    }

    /// Tops the pool of ready networks up again, in the background.
    pub fn refill_warm(&self) {
        self.warm.refill();
    }

    /// Removes every ready network (clean shutdown).
    pub fn stop_warming(&self) {
        for entry in self.warm.stop() {
            self.drop_warm(entry);
        }
    }

    fn make_warm(&self) -> Result<WarmEntry, NodeError> {
        let key = WarmPool::new_key();
        let dir = SandboxDir::new(self.warm.entry_dir(&key));
        let made = (|| {
            std::fs::create_dir_all(dir.path()).map_err(NodeError::io(dir.path()))?;
            let record = dir.path().join(warm::NETWORK_KEY_FILE);
            std::fs::write(&record, &key).map_err(NodeError::io(&record))?;
            let range = if self.warm.userns() {
                let range = self.id_ranges.allocate(&key)?;
                sandbox::pin_namespaces(&dir, range, &berth_net::netns_path(&key))?;
                Some(range)
            } else {
                None
            };
            let network = match range {
                Some(_) => self.network.setup_in(&key, &berth_net::Egress::Open)?,
                None => self.network.setup(&key, &berth_net::Egress::Open)?,
            };
            Ok(WarmEntry {
                key: key.clone(),
                network,
                range,
            })
        })();
        if made.is_err() {
            self.remove_warm_dir(&key);
        }
        made
    }

    fn drop_warm(&self, entry: WarmEntry) {
        self.remove_warm_dir(&entry.key);
    }

    /// Undoes a ready network, whole or half made.
    fn remove_warm_dir(&self, key: &str) {
        let dir = SandboxDir::new(self.warm.entry_dir(key));
        let range = sandbox::read_idmap_record(&dir).ok().flatten();
        if let Err(e) = berth_runtime::idmap::unpin(&dir.userns_file()) {
            tracing::warn!("removing the ready network {key}: {e}");
        }
        if let Err(e) = self.network.teardown(key) {
            tracing::warn!("removing the ready network {key}: {e}");
        }
        if let Some(record) = range {
            self.id_ranges.release(key, record.host_start);
        }
        let _ = std::fs::remove_dir_all(dir.path());
    }

    /// A ready network for container `id`, whose sandbox directory it becomes; `None` when
    /// none of this kind is ready.
    fn take_warm(
        &self,
        id: &str,
        userns: bool,
    ) -> Option<(PodNetwork, Option<berth_runtime::IdRange>)> {
        let entry = self.warm.take(userns)?;
        let target = self.dir(id);
        if let Err(e) = std::fs::rename(self.warm.entry_dir(&entry.key), target.path()) {
            tracing::warn!(
                container = id,
                "taking the ready network {}: {e}",
                entry.key
            );
            self.drop_warm(entry);
            return None;
        }
        if let Some(range) = entry.range {
            // Until this lands the slot names the key, which remove() also releases.
            if let Err(e) = self.id_ranges.transfer(&entry.key, id, range.host_start) {
                tracing::warn!(container = id, "recording the id range: {e}");
            }
        }
        Some((entry.network, entry.range))
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
        let started = std::time::Instant::now();
        let wants_userns = req.user_namespace && kind == RuntimeKind::Runc && self.userns;
        let (pod_net, user_namespace) = match self.take_warm(id, wants_userns) {
            Some((pod_net, range)) => {
                if req.egress != berth_net::Egress::Open {
                    self.network.set_egress(&pod_net, &req.egress)?;
                }
                (pod_net, range)
            }
            None => {
                let range = if wants_userns {
                    Some(self.id_ranges.allocate(id)?)
                } else {
                    None
                };
                let pod_net = match range {
                    Some(range) => {
                        sandbox::pin_namespaces(&dir, range, &berth_net::netns_path(id))?;
                        self.network.setup_in(id, &req.egress)?
                    }
                    None => self.network.setup(id, &req.egress)?,
                };
                (pod_net, range)
            }
        };
        let network_took = started.elapsed();
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
            network_took,
            rootfs_took: started.elapsed() - network_took,
        })
    }

    /// A network namespace with open egress for a builder that runs its own containers
    /// (a Dockerfile build's `RUN` steps); [`Sandboxes::remove`] takes it down.
    pub fn open_network(&self, id: &str) -> Result<PathBuf, NodeError> {
        Ok(self.network.setup(id, &berth_net::Egress::Open)?.netns)
    }

    /// Removes the runtime state, mounts and network of `id`. Idempotent.
    pub fn remove(&self, id: &str) -> Result<(), NodeError> {
        let dir = self.dir(id);
        let mapped = sandbox::read_idmap_record(&dir).ok().flatten();
        let net_key = warm::recorded_key(dir.path());
        let fs = sandbox::remove(self.runtime_of(id), id, &dir, &Self::cgroups_path(id));
        let net = self.network.teardown(net_key.as_deref().unwrap_or(id));
        if let (Ok(()), Some(record)) = (&fs, mapped) {
            self.id_ranges.release(id, record.host_start);
            if let Some(key) = &net_key {
                // A start cut off before the range changed hands.
                self.id_ranges.release(key, record.host_start);
            }
        }
        if net.is_ok() && net_key.is_some() {
            let _ = std::fs::remove_file(dir.path().join(warm::NETWORK_KEY_FILE));
        }
        fs?;
        net?;
        Ok(())
    }

    /// On a clean shutdown with no pod left: removes the bridge and the containers' parent
    /// cgroup, so the host looks as it did before the server ran.
    pub fn release_host_resources(&self) {
        self.stop_warming();
        self.network.remove_bridge_if_unused();
        berth_runtime::remove_empty_cgroup(CGROUP_PARENT);
    }
}
