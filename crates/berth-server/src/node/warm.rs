//! Pod networks made ahead of need: a namespace wired by CNI with the default egress rules,
//! and for runc pods the user namespace that owns it, so a create skips the slowest part of
//! its start (about 75 ms of 170 on the development machine, most of it the CNI `bridge`
//! plugin and two `iptables-restore` runs). A pod takes one when its kind matches; the pool
//! is refilled in the background after the pod has started, and an empty pool falls back to
//! making the network on the create's own path.
//!
//! An entry is a directory `<state>/warm/<key>` (the pinned user namespace and its id
//! record, as in a container's directory) and a network named by `key`. Taking it renames
//! the directory to the container's, so from then on it is the container's sandbox
//! directory; the file `network` inside names the key, so teardown finds the namespace.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::thread::JoinHandle;

use berth_net::PodNetwork;
use berth_runtime::IdRange;

use super::NodeError;

/// The file in a sandbox directory that names the network it uses, when that is not the
/// container id (a taken warm entry).
pub const NETWORK_KEY_FILE: &str = "network";

/// A network ready for a pod.
#[derive(Debug)]
pub struct WarmEntry {
    pub key: String,
    pub network: PodNetwork,
    /// The host ids of its user namespace; `None` for plain namespaces.
    pub range: Option<IdRange>,
}

#[derive(Default)]
struct PoolState {
    entries: VecDeque<WarmEntry>,
    stopping: bool,
}

pub struct WarmPool {
    dir: PathBuf,
    target: usize,
    /// Whether entries carry a user namespace (what a default runc pod needs here).
    userns: bool,
    state: Mutex<PoolState>,
    wake: Condvar,
    filler: Mutex<Option<JoinHandle<()>>>,
}

impl WarmPool {
    pub fn new(dir: PathBuf, target: usize, userns: bool) -> Result<Self, NodeError> {
        std::fs::create_dir_all(&dir).map_err(NodeError::io(&dir))?;
        Ok(WarmPool {
            dir,
            target,
            userns,
            state: Mutex::default(),
            wake: Condvar::new(),
            filler: Mutex::default(),
        })
    }

    pub fn target(&self) -> usize {
        self.target
    }

    pub fn userns(&self) -> bool {
        self.userns
    }

    pub fn entry_dir(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// A new entry's key, unlike any container id (those start with `pod-`).
    pub fn new_key() -> String {
        format!("warm-{:016x}", rand::random::<u64>())
    }

    /// Keys of the entries on disk: at start, what a previous server left.
    pub fn leftovers(&self) -> Vec<String> {
        std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| name.starts_with("warm-"))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// An entry of the kind asked for, if one is ready.
    pub fn take(&self, userns: bool) -> Option<WarmEntry> {
        if userns != self.userns {
            return None;
        }
        self.lock().entries.pop_front()
    }

    /// Adds a made entry; gives it back when the pool is stopping, for the caller to remove.
    pub fn push(&self, entry: WarmEntry) -> Result<(), WarmEntry> {
        let mut state = self.lock();
        if state.stopping {
            return Err(entry);
        }
        state.entries.push_back(entry);
        Ok(())
    }

    /// Asks the filler to top the pool up (after a start, so it does not compete with one).
    pub fn refill(&self) {
        self.wake.notify_one();
    }

    /// Blocks the filler until the pool has room; `false` once it is stopping.
    pub fn wait_for_room(&self) -> bool {
        let mut state = self.lock();
        loop {
            if state.stopping {
                return false;
            }
            if state.entries.len() < self.target {
                return true;
            }
            state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    pub fn set_filler(&self, handle: JoinHandle<()>) {
        *self.filler.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
    }

    /// Stops the filler (waiting for an entry it is making) and hands back every entry.
    pub fn stop(&self) -> Vec<WarmEntry> {
        self.lock().stopping = true;
        self.wake.notify_all();
        if let Some(filler) = self.filler.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = filler.join();
        }
        self.lock().entries.drain(..).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The network key recorded in sandbox directory `dir`, if it is not its own name.
pub fn recorded_key(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(NETWORK_KEY_FILE))
        .ok()
        .map(|k| k.trim().to_string())
        .filter(|k| k.starts_with("warm-") && !k.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str) -> WarmEntry {
        WarmEntry {
            key: key.into(),
            network: PodNetwork {
                netns: PathBuf::from("/run/netns/x"),
                ipv4: None,
                ipv6: None,
            },
            range: None,
        }
    }

    #[test]
    fn entries_go_to_the_matching_kind_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = WarmPool::new(dir.path().join("warm"), 2, true).expect("pool");
        assert!(pool.wait_for_room(), "an empty pool has room");
        pool.push(entry("warm-a")).expect("push");
        pool.push(entry("warm-b")).expect("push");
        assert!(
            pool.take(false).is_none(),
            "a plain pod takes no userns entry"
        );
        assert_eq!(pool.take(true).map(|e| e.key).as_deref(), Some("warm-a"));
        let left = pool.stop();
        assert_eq!(left.len(), 1, "stop hands back what is left");
        assert!(!pool.wait_for_room(), "a stopped pool makes nothing");
        assert!(pool.push(entry("warm-c")).is_err(), "nor takes anything");
    }

    #[test]
    fn the_recorded_key_must_be_a_warm_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(recorded_key(dir.path()), None);
        std::fs::write(dir.path().join(NETWORK_KEY_FILE), "warm-00ff\n").expect("write");
        assert_eq!(recorded_key(dir.path()).as_deref(), Some("warm-00ff"));
        std::fs::write(dir.path().join(NETWORK_KEY_FILE), "../../etc").expect("write");
        assert_eq!(recorded_key(dir.path()), None);
    }
}
