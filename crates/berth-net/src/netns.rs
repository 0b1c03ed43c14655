//! Named network namespaces (`/run/netns/<name>`, the layout `ip netns` and CNI tools share).

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::mount::{mount, MsFlags};

use crate::{command, NetError};

const NETNS_DIR: &str = "/run/netns";

/// Makes `/run/netns` a shared mount point of its own, once, under a lock every berth
/// process takes. `ip netns add` does this on first use, but two doing it at once stack two
/// bind mounts, and a namespace mounted between them is hidden under the second, where no
/// `ip netns delete` reaches it (seen on a fresh machine with several servers starting).
pub fn prepare_dir() -> Result<(), NetError> {
    let io = |source| NetError::Io {
        path: PathBuf::from(NETNS_DIR),
        source,
    };
    std::fs::create_dir_all(NETNS_DIR).map_err(io)?;
    let dir = std::fs::File::open(NETNS_DIR).map_err(io)?;
    let _held = Flock::lock(dir, FlockArg::LockExclusive)
        .map_err(|(_, errno)| io(std::io::Error::from(errno)))?;
    let shared = || {
        mount(
            None::<&str>,
            NETNS_DIR,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => Ok(()),
        // Not a mount point yet: bind it onto itself first, as `ip netns` would.
        Err(Errno::EINVAL) => mount(
            Some(NETNS_DIR),
            NETNS_DIR,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .and_then(|()| shared())
        .map_err(|errno| io(std::io::Error::from(errno))),
        Err(errno) => Err(io(std::io::Error::from(errno))),
    }
}

pub fn name(container_id: &str) -> String {
    format!("berth-{}", container_id.trim_start_matches("pod-"))
}

pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

pub fn create(name: &str) -> Result<PathBuf, NetError> {
    run_ip(name, &["netns", "add", name])?;
    Ok(path(name))
}

/// Removes a link on the host (the bridge); a missing one is fine.
pub fn delete_link(name: &str) {
    let _ = command::run("ip", &["link", "del", name], &[], None);
}

pub fn delete(name: &str) -> Result<(), NetError> {
    if !path(name).exists() {
        return Ok(());
    }
    run_ip(name, &["netns", "delete", name])
}

/// Sets the bridge port `veth` isolated (`bridge link ... isolated on`).
pub fn isolate_bridge_port(veth: &str) -> Result<(), NetError> {
    run_ip(
        veth,
        &[
            "link",
            "set",
            "dev",
            veth,
            "type",
            "bridge_slave",
            "isolated",
            "on",
        ],
    )
}

fn run_ip(name: &str, args: &[&str]) -> Result<(), NetError> {
    command::run("ip", args, &[], None)
        .map(drop)
        .map_err(|e| NetError::Netns {
            name: name.to_string(),
            message: e.to_string(),
        })
}

/// The namespace's own settings: IPv6 duplicate address detection off, so the pod's IPv6
/// address is usable the moment the plugin assigns it (no pod shares its address); and
/// every port bindable without privilege, so a pod whose root is unprivileged on the host
/// (a user namespace, which does not own this namespace) can still serve on port 80.
pub fn configure(netns: &Path) -> Result<(), NetError> {
    let netns = netns.to_path_buf();
    let err = |message: String| NetError::Netns {
        name: netns.display().to_string(),
        message,
    };
    let file = std::fs::File::open(&netns).map_err(|e| err(e.to_string()))?;
    // A short-lived thread enters the namespace, so the rest of the process never moves.
    let joined = std::thread::spawn(move || -> Result<(), String> {
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("setns: {e}"))?;
        for conf in ["all", "default"] {
            let path = format!("/proc/sys/net/ipv6/conf/{conf}/accept_dad");
            // Hosts with IPv6 disabled have no such file; nothing to do there.
            let _ = std::fs::write(path, "0");
        }
        std::fs::write("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0")
            .map_err(|e| format!("ip_unprivileged_port_start: {e}"))?;
        Ok(())
    })
    .join();
    match joined {
        Ok(result) => result.map_err(err),
        Err(_) => Err(err("namespace thread panicked".into())),
    }
}
