//! Host state a container leaves behind when teardown is incomplete: network namespaces,
//! mounts, veth pairs, firewall rules, shim processes, cgroups, address leases and the loop
//! devices of capped disks.
//!
//! A snapshot is taken before the suite starts anything; after teardown every new item is a
//! leak. A probe that fails (a tool missing or erroring, a file unreadable) sees nothing, so it
//! cannot vouch for anything: its error fails the check instead of comparing an empty set with
//! itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::server::{ipam_dir, state_dir_in};
use super::{command_output, poll, Res};

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    items: BTreeMap<&'static str, BTreeSet<String>>,
    /// "kind: error" for each probe that failed.
    errors: Vec<String>,
}

impl Snapshot {
    /// Takes a snapshot; `scope` is the suite's temporary directory (mounts under it count,
    /// and the address leases of every server started in it or in a directory just below it).
    pub fn take(scope: &Path) -> Snapshot {
        let probes: [(&'static str, Res<BTreeSet<String>>); 8] = [
            ("network namespace", network_namespaces()),
            ("mount", mounts(scope)),
            ("veth link", veth_links()),
            ("iptables rule", firewall_rules()),
            ("berth shim process", shim_processes()),
            ("cgroup", cgroups()),
            ("CNI address lease", cni_leases(scope)),
            ("loop device", loop_devices()),
        ];
        let mut snapshot = Snapshot::default();
        for (kind, probe) in probes {
            match probe {
                Ok(found) => {
                    snapshot.items.insert(kind, found);
                }
                Err(e) => snapshot.errors.push(format!("{kind}: {e}")),
            }
        }
        snapshot
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

    /// How many items of each kind, for tests that watch totals rise and fall.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        self.items.iter().map(|(k, v)| (*k, v.len())).collect()
    }

    /// Snapshots until two taken a second apart agree (a server refilling its warm networks
    /// has finished), for up to `limit`; the last one taken.
    pub fn settled(scope: &Path, limit: Duration) -> Snapshot {
        let mut last = Snapshot::take(scope);
        let _ = poll(limit, Duration::from_secs(1), || {
            let now = Snapshot::take(scope);
            let same = now.items == last.items;
            last = now;
            same.then_some(())
        });
        last
    }

    /// The probes that failed, as "kind: error" lines.
    pub fn errors(&self) -> &[String] {
        &self.errors
    }

    /// Mount points under `scope`, so teardown does not delete through a live mount.
    pub fn mounts_under(scope: &Path) -> Res<Vec<String>> {
        let prefix = scope.display().to_string();
        Ok(read_mounts()?
            .into_iter()
            .filter(|(_, point, _)| point.starts_with(&prefix))
            .map(|(_, point, _)| point)
            .collect())
    }
}

/// What the leak check found.
#[derive(Debug, Default)]
pub struct Report {
    /// "kind: item" for each item new since the first snapshot.
    pub leaked: Vec<String>,
    /// Probes that failed, before the suite or at the end: what they watch is unchecked.
    pub probe_errors: Vec<String>,
}

/// Waits up to `settle` for leaks to disappear (teardown of a stopped container may finish
/// just after its state is recorded), then reports what is still leaked and every probe that
/// failed.
pub fn check(before: &Snapshot, scope: &Path, settle: Duration) -> Report {
    let mut report = Report::default();
    report.probe_errors.extend(
        before
            .errors()
            .iter()
            .map(|e| format!("before the suite started: {e}")),
    );
    let mut last = Snapshot::default();
    let clean = poll(settle, Duration::from_millis(500), || {
        last = Snapshot::take(scope);
        (last.errors().is_empty() && last.new_since(before).is_empty()).then_some(())
    });
    if clean.is_none() {
        report.leaked = last.new_since(before);
        report
            .probe_errors
            .extend(last.errors().iter().map(|e| format!("after teardown: {e}")));
    }
    report
}

fn lines(program: &str, args: &[&str]) -> Res<Vec<String>> {
    Ok(command_output(program, args)?
        .lines()
        .map(str::to_string)
        .collect())
}

/// Loop devices and their backing files (a pod's capped disk is one).
fn loop_devices() -> Res<BTreeSet<String>> {
    Ok(lines(
        "losetup",
        &["--list", "--noheadings", "--output", "NAME,BACK-FILE"],
    )?
    .into_iter()
    .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
    .filter(|l| !l.is_empty())
    .collect())
}

fn network_namespaces() -> Res<BTreeSet<String>> {
    Ok(lines("ip", &["netns", "list"])?
        .into_iter()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect())
}

/// (device, mount point, fs type) of every mount.
fn read_mounts() -> Res<Vec<(String, String, String)>> {
    let text =
        std::fs::read_to_string("/proc/mounts").map_err(|e| format!("read /proc/mounts: {e}"))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((
                f.next()?.to_string(),
                f.next()?.to_string(),
                f.next()?.to_string(),
            ))
        })
        .collect())
}

fn mounts(scope: &Path) -> Res<BTreeSet<String>> {
    let scope = scope.display().to_string();
    Ok(read_mounts()?
        .into_iter()
        .filter(|(dev, point, fstype)| {
            fstype == "overlay"
                || fstype == "nsfs"
                || point.contains(&scope)
                || dev.contains(&scope)
                || point.contains("berth")
        })
        .map(|(dev, point, fstype)| format!("{dev} on {point} type {fstype}"))
        .collect())
}

fn veth_links() -> Res<BTreeSet<String>> {
    // "12: veth1234@if3: <BROADCAST,...> mtu 1500 ..." -> "veth1234"
    Ok(lines("ip", &["-o", "link", "show", "type", "veth"])?
        .into_iter()
        .filter_map(|l| {
            let name = l.split_whitespace().nth(1)?;
            Some(name.trim_end_matches(':').split('@').next()?.to_string())
        })
        .collect())
}

fn firewall_rules() -> Res<BTreeSet<String>> {
    let mut rules = BTreeSet::new();
    for (family, program) in [("v4", "iptables-save"), ("v6", "ip6tables-save")] {
        for line in lines(program, &[])? {
            let lower = line.to_ascii_lowercase();
            if lower.contains("cni") || lower.contains("berth") {
                rules.insert(format!("{family} {}", strip_counters(&line)));
            }
        }
    }
    Ok(rules)
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

fn shim_processes() -> Res<BTreeSet<String>> {
    let mut shims = BTreeSet::new();
    let entries = std::fs::read_dir("/proc").map_err(|e| format!("list /proc: {e}"))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.chars().all(|c| c.is_ascii_digit()))
        else {
            continue;
        };
        // A process that exited since the listing has no cmdline any more: nothing to report.
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_shim = argv
            .first()
            .is_some_and(|a0| Path::new(a0).file_name().is_some_and(|f| f == "berth-shim"));
        if is_shim {
            shims.insert(format!("pid {pid}: {}", argv.join(" ")));
        }
    }
    Ok(shims)
}

/// cgroup directories named after berth or a pod, in any hierarchy.
fn cgroups() -> Res<BTreeSet<String>> {
    const ROOT: &str = "/sys/fs/cgroup";
    std::fs::read_dir(ROOT).map_err(|e| format!("list {ROOT}: {e}"))?;
    let mut found = BTreeSet::new();
    let mut stack: Vec<(PathBuf, usize)> = vec![(PathBuf::from(ROOT), 0)];
    while let Some((dir, depth)) = stack.pop() {
        // A cgroup removed during the walk is no leak.
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
    Ok(found)
}

/// The IPAM directories of the servers the suite starts: the shared server's in `scope`,
/// and those of extra servers each started in a directory of its own just below it.
fn ipam_dirs(scope: &Path) -> Res<Vec<PathBuf>> {
    let mut dirs = vec![ipam_dir(&state_dir_in(scope))];
    let entries = std::fs::read_dir(scope).map_err(|e| format!("list {}: {e}", scope.display()))?;
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            dirs.push(ipam_dir(&state_dir_in(&entry.path())));
        }
    }
    Ok(dirs)
}

/// The host-local IPAM leases held for pods: one file per address, named after it, in each
/// network's directory under a server's IPAM directory. A directory that does not exist (yet)
/// holds none; one that cannot be read fails the probe.
fn cni_leases(scope: &Path) -> Res<BTreeSet<String>> {
    let mut leases = BTreeSet::new();
    for dir in ipam_dirs(scope)? {
        let networks = match std::fs::read_dir(&dir) {
            Ok(networks) => networks,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("list {}: {e}", dir.display())),
        };
        for network in networks {
            let network = network.map_err(|e| format!("list {}: {e}", dir.display()))?;
            if !network.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = network.path();
            let files =
                std::fs::read_dir(&path).map_err(|e| format!("list {}: {e}", path.display()))?;
            for file in files {
                let file = file.map_err(|e| format!("list {}: {e}", path.display()))?;
                let name = file.file_name().to_string_lossy().into_owned();
                if name == "lock" || name.starts_with("last_reserved_ip") {
                    continue;
                }
                leases.insert(file.path().display().to_string());
            }
        }
    }
    Ok(leases)
}
