//! Pod networking: one network namespace per pod, wired by the standard CNI plugins
//! (`loopback`, then `bridge` with `host-local` addresses, dual-stack, egress NAT).
//!
//! Only this crate calls CNI plugins or touches iptables (through them, the host guard and
//! each pod's egress rules).

mod cni;
mod command;
mod egress;
mod error;
mod guard;
mod netns;
mod routes;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipnet::{Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

pub use egress::Egress;
pub use error::NetError;
pub use routes::check_overlap as check_subnets;

/// The CNI plugins berth calls, all from containernetworking-plugins.
pub const CNI_PLUGINS: [&str; 3] = ["bridge", "host-local", "loopback"];

/// Defaults chosen clear of podman's 10.88.0.0/16 and Docker's 172.17.0.0/16.
pub const DEFAULT_SUBNET_V4: &str = "10.213.0.0/16";
pub const DEFAULT_SUBNET_V6: &str = "fd62:6572:7468::/64";
pub const DEFAULT_BRIDGE: &str = "berth0";

#[derive(Debug, Clone)]
pub struct NetConfig {
    pub bridge: String,
    pub subnet_v4: Ipv4Net,
    pub subnet_v6: Option<Ipv6Net>,
    /// Where the CNI plugin binaries live (Debian: /usr/lib/cni).
    pub cni_bin_dir: PathBuf,
    /// berth's own network state: address leases and each pod's CNI result.
    pub state_dir: PathBuf,
}

/// A pod's network as set up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodNetwork {
    pub netns: PathBuf,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

pub struct Network {
    config: NetConfig,
    /// Whether the host guard is in place (installed with the first pod, removed with the
    /// bridge). A lock, not a flag: pods starting together must not install it twice at once.
    guarded: std::sync::Mutex<bool>,
}

/// Where the network namespace of container `id` is pinned (`/run/netns/berth-...`).
pub fn netns_path(id: &str) -> PathBuf {
    netns::path(&netns::name(id))
}

impl Network {
    /// Checks the configuration against this host, writing nothing. A pod
    /// subnet that overlaps a route the host already has (other than berth's own bridge) is
    /// refused: pods would shadow part of the host's network.
    pub fn new(config: NetConfig) -> Result<Self, NetError> {
        if config.bridge.is_empty() || config.bridge.len() > 15 {
            return Err(NetError::Config(format!(
                "bridge name {:?} must be 1-15 characters",
                config.bridge
            )));
        }
        if !config.cni_bin_dir.join("bridge").exists() {
            return Err(NetError::Config(format!(
                "CNI plugins not found in {} (install containernetworking-plugins)",
                config.cni_bin_dir.display()
            )));
        }
        routes::check_overlap(&config)?;
        netns::prepare_dir()?;
        Ok(Network {
            config,
            guarded: Default::default(),
        })
    }

    fn ensure_state_dir(&self) -> Result<(), NetError> {
        let dir = self.config.state_dir.join("results");
        std::fs::create_dir_all(&dir).map_err(|source| NetError::Io { path: dir, source })
    }

    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// Creates the pod's namespace, wires it and installs its egress rules. On failure
    /// nothing is left behind.
    pub fn setup(&self, id: &str, egress: &Egress) -> Result<PodNetwork, NetError> {
        self.ensure_state_dir()?;
        let netns = netns::create(&netns::name(id))?;
        self.setup_netns(id, egress, netns)
    }

    /// Like [`Network::setup`], in a namespace the caller made and pinned at
    /// [`netns_path`] (one owned by the pod's user namespace); removed by
    /// [`Network::teardown`] as any other.
    pub fn setup_in(&self, id: &str, egress: &Egress) -> Result<PodNetwork, NetError> {
        self.ensure_state_dir()?;
        self.setup_netns(id, egress, netns_path(id))
    }

    fn setup_netns(
        &self,
        id: &str,
        egress: &Egress,
        netns: PathBuf,
    ) -> Result<PodNetwork, NetError> {
        let wired = self.wire(id, &netns).and_then(|pod| {
            egress::apply(&netns, egress, pod.ipv6.is_some())?;
            Ok(pod)
        });
        match wired {
            Ok(pod) => Ok(pod),
            Err(e) => {
                if let Err(cleanup) = self.teardown(id) {
                    tracing::warn!(
                        container = id,
                        "cleaning up a failed network setup: {cleanup}"
                    );
                }
                Err(e)
            }
        }
    }

    fn wire(&self, id: &str, netns: &Path) -> Result<PodNetwork, NetError> {
        {
            let mut guarded = self.guarded.lock().unwrap_or_else(|p| p.into_inner());
            if !*guarded {
                guard::install(&self.config.bridge, self.config.subnet_v6.is_some())?;
                *guarded = true;
            }
        }
        netns::configure(netns)?;
        let cni = cni::Cni::new(&self.config);
        cni.add_loopback(id, netns)?;
        let result = cni.add_bridge(id, netns)?;
        let path = self.result_path(id);
        let json = serde_json::to_vec(&result).map_err(|e| NetError::Plugin {
            plugin: "bridge".into(),
            message: format!("result cannot be saved: {e}"),
        })?;
        std::fs::write(&path, json).map_err(|e| NetError::Io {
            path: path.clone(),
            source: e,
        })?;
        let unusable = |what: &str| NetError::Plugin {
            plugin: "bridge".into(),
            message: format!("returned no {what}: {result:?}"),
        };
        // Pods share the bridge but must not reach each other: an isolated bridge port only
        // forwards to the bridge itself (the host, the way out), never to another isolated port.
        let veth = result
            .host_interface(&self.config.bridge)
            .ok_or_else(|| unusable("host-side interface"))?;
        netns::isolate_bridge_port(veth)?;
        let (ipv4, ipv6) = result.addresses();
        if ipv4.is_none() && ipv6.is_none() {
            return Err(unusable("addresses"));
        }
        Ok(PodNetwork {
            netns: netns.to_path_buf(),
            ipv4,
            ipv6,
        })
    }

    /// Replaces the egress rules of a namespace [`Network::setup`] made (a network made
    /// ahead with the default policy, given to a pod with another).
    pub fn set_egress(&self, pod: &PodNetwork, egress: &Egress) -> Result<(), NetError> {
        egress::apply(&pod.netns, egress, pod.ipv6.is_some())
    }

    /// Releases the pod's addresses, NAT rules, veth and namespace. Safe to call again, and
    /// for a pod whose setup stopped half-way.
    pub fn teardown(&self, id: &str) -> Result<(), NetError> {
        let name = netns::name(id);
        let netns = netns::path(&name);
        let cni = cni::Cni::new(&self.config);
        let prev: Option<cni::CniResult> = std::fs::read_to_string(self.result_path(id))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let ns_arg = netns.exists().then_some(netns.as_path());
        let mut first_error = cni.del_bridge(id, ns_arg, prev.as_ref()).err();
        if let Err(e) = cni.del_loopback(id, ns_arg) {
            first_error.get_or_insert(e);
        }
        if let Err(e) = netns::delete(&name) {
            first_error.get_or_insert(e);
        }
        let _ = std::fs::remove_file(self.result_path(id));
        first_error.map_or(Ok(()), Err)
    }

    /// Removes the bridge once no pod uses it (clean server shutdown).
    pub fn remove_bridge_if_unused(&self) {
        let dir = self.config.state_dir.join("results");
        let busy = std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        if !busy {
            let mut guarded = self.guarded.lock().unwrap_or_else(|p| p.into_inner());
            guard::remove(&self.config.bridge);
            *guarded = false;
            netns::delete_link(&self.config.bridge);
        }
    }

    fn result_path(&self, id: &str) -> PathBuf {
        self.config
            .state_dir
            .join("results")
            .join(format!("{id}.json"))
    }
}
