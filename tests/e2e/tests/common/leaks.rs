//! Host state a container leaves behind when teardown is incomplete: network namespaces,
//! mounts, veth pairs, firewall rules, shim processes, cgroups and address leases.
//!
//! A snapshot is taken before the suite starts anything; after teardown every new item is a
//! leak.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{command_output, poll};

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    items: BTreeMap<&'static str, BTreeSet<String>>,
}

impl Snapshot {
    /// Takes a snapshot; `scope` is the suite's temporary directory (mounts under it count).
    pub fn take(scope: &Path) -> Snapshot {
        let mut items = BTreeMap::new();
        items.insert("network namespace", network_namespaces());
        items.insert("mount", mounts(scope));
        items.insert("veth link", veth_links());
        items.insert("iptables rule", firewall_rules());
        items.insert("berth shim process", shim_processes());
        items.insert("cgroup", cgroups());
        items.insert("CNI address lease", cni_leases());
        Snapshot { items }
    }

    /// Items present in `self` but not in `before`, as "kind: item" lines.
    pub fn new_since(&self, before: &Snapshot) -> Vec<String> {
        let mut leaks = Vec::new();
        for (kind, now) in &self.items {
            let then = before.items.get(kind);
            for item in now {
                if !then.is_some_and(|t| t.contains(item)) {
                    leaks.push(format!("{kind}: {item}"));
                }
            }
        }
        leaks
    }

    /// Mount points under `scope`, so teardown does not delete through a live mount.
    pub fn mounts_under(scope: &Path) -> Vec<String> {
        let prefix = scope.display().to_string();
        read_mounts()
            .into_iter()
            .filter(|(_, point, _)| point.starts_with(&prefix))
            .map(|(_, point, _)| point)
            .collect()
    }
}

/// Waits up to `settle` for leaks to disappear (teardown of a stopped container may finish
/// just after its state is recorded), then returns what is still leaked.
pub fn check(before: &Snapshot, scope: &Path, settle: Duration) -> Vec<String> {
    let mut last = Vec::new();
    let clean = poll(settle, Duration::from_millis(500), || {
        last = Snapshot::take(scope).new_since(before);
        last.is_empty().then_some(())
    });
    if clean.is_some() {
        Vec::new()
    } else {
        last
    }
}

fn lines_or_error(program: &str, args: &[&str]) -> Vec<String> {
    match command_output(program, args) {
        Ok(out) => out.lines().map(str::to_string).collect(),
        // An error is recorded as an item: it then only counts if it is new.
        Err(e) => vec![format!("(error: {e})")],
    }
}

fn network_namespaces() -> BTreeSet<String> {
    lines_or_error("ip", &["netns", "list"])
        .into_iter()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// (device, mount point, fs type) of every mount.
fn read_mounts() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((
                f.next()?.to_string(),
                f.next()?.to_string(),
                f.next()?.to_string(),
            ))
        })
        .collect()
}

fn mounts(scope: &Path) -> BTreeSet<String> {
    let scope = scope.display().to_string();
    read_mounts()
        .into_iter()
        .filter(|(dev, point, fstype)| {
            fstype == "overlay"
                || fstype == "nsfs"
                || point.contains(&scope)
                || dev.contains(&scope)
                || point.contains("berth")
        })
        .map(|(dev, point, fstype)| format!("{dev} on {point} type {fstype}"))
        .collect()
}

fn veth_links() -> BTreeSet<String> {
    // "12: veth1234@if3: <BROADCAST,...> mtu 1500 ..." -> "veth1234"
    lines_or_error("ip", &["-o", "link", "show", "type", "veth"])
        .into_iter()
        .filter_map(|l| {
            let name = l.split_whitespace().nth(1)?;
            Some(name.trim_end_matches(':').split('@').next()?.to_string())
        })
        .collect()
}

fn firewall_rules() -> BTreeSet<String> {
    let mut rules = BTreeSet::new();
    for (family, program) in [("v4", "iptables-save"), ("v6", "ip6tables-save")] {
        for line in lines_or_error(program, &[]) {
            let lower = line.to_ascii_lowercase();
            if lower.contains("cni") || lower.contains("berth") {
                rules.insert(format!("{family} {}", strip_counters(&line)));
            }
        }
    }
    rules
}

/// Drops packet counters like `[12:3456]` so a chain seen twice compares equal.
fn strip_counters(line: &str) -> String {
    line.split_whitespace()
        .filter(|w| {
            !(w.starts_with('[')
                && w.ends_with(']')
                && w[1..w.len() - 1]
                    .split(':')
                    .all(|n| n.chars().all(|c| c.is_ascii_digit())))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn shim_processes() -> BTreeSet<String> {
    let mut shims = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return shims;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.chars().all(|c| c.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_berth = argv
            .first()
            .is_some_and(|a0| Path::new(a0).file_name().is_some_and(|f| f == "berth"));
        if is_berth && argv.get(1).is_some_and(|a| a == "shim") {
            shims.insert(format!("pid {pid}: {}", argv.join(" ")));
        }
    }
    shims
}

/// cgroup directories named after berth or a pod, in any hierarchy.
fn cgroups() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut stack: Vec<(PathBuf, usize)> = vec![(PathBuf::from("/sys/fs/cgroup"), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.contains("berth") || name.starts_with("pod-") {
                found.insert(path.display().to_string());
            }
            if depth < 6 {
                stack.push((path, depth + 1));
            }
        }
    }
    found
}

/// host-local IPAM leases in the default data directory.
fn cni_leases() -> BTreeSet<String> {
    let mut leases = BTreeSet::new();
    let Ok(networks) = std::fs::read_dir("/var/lib/cni/networks") else {
        return leases;
    };
    for network in networks.flatten() {
        let Ok(files) = std::fs::read_dir(network.path()) else {
            continue;
        };
        for file in files.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            if name == "lock" || name.starts_with("last_reserved_ip") {
                continue;
            }
            leases.insert(file.path().display().to_string());
        }
    }
    leases
}
