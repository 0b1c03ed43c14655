//! Reading what the kernel's memory cgroup recorded about a container.

use std::path::Path;

/// How many times the OOM killer fired in the container's memory cgroup (`cgroups_path` as
/// in the runtime spec, like `/berth/<id>`). Reads cgroup v1 `memory.oom_control` or v2
/// `memory.events`, whichever the host has. `None` when the cgroup is gone or unreadable.
pub fn oom_kill_count(cgroups_path: &str) -> Option<u64> {
    oom_kill_count_under(Path::new("/sys/fs/cgroup"), cgroups_path)
}

/// Removes the cgroup directory `cgroups_path` (like `/berth`, the parent of all pods) from
/// every hierarchy where it is empty. A parent that still holds pods stays.
pub fn remove_empty_cgroup(cgroups_path: &str) {
    let rel = cgroups_path.trim_start_matches('/');
    if rel.is_empty() {
        return;
    }
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut dirs: Vec<std::path::PathBuf> =
        hierarchies.flatten().map(|h| h.path().join(rel)).collect();
    dirs.push(Path::new("/sys/fs/cgroup").join(rel));
    for dir in dirs {
        // rmdir of a cgroup fails while it has children or tasks, which is what we want.
        let _ = std::fs::remove_dir(dir);
    }
}

/// How many times a fork in the cgroup failed at its pids limit (`pids.events`, v1 or v2).
pub fn pids_limit_hits(cgroups_path: &str) -> Option<u64> {
    pids_limit_hits_under(Path::new("/sys/fs/cgroup"), cgroups_path)
}

fn pids_limit_hits_under(root: &Path, cgroups_path: &str) -> Option<u64> {
    counter(
        root,
        cgroups_path,
        ("pids", "pids.events", "pids.events"),
        "max",
    )
}

fn oom_kill_count_under(root: &Path, cgroups_path: &str) -> Option<u64> {
    counter(
        root,
        cgroups_path,
        ("memory", "memory.oom_control", "memory.events"),
        "oom_kill",
    )
}

/// The `key N` line of a cgroup's events file: under the v1 `controller` hierarchy
/// (`v1_file`), or at the v2 root or its `unified` mount (`v2_file`).
fn counter(
    root: &Path,
    cgroups_path: &str,
    (controller, v1_file, v2_file): (&str, &str, &str),
    key: &str,
) -> Option<u64> {
    let rel = cgroups_path.trim_start_matches('/');
    let candidates = [
        root.join(controller).join(rel).join(v1_file),
        root.join(rel).join(v2_file),
        root.join("unified").join(rel).join(v2_file),
    ];
    candidates.iter().find_map(|path| {
        let text = std::fs::read_to_string(path).ok()?;
        text.lines().find_map(|line| {
            let (k, value) = line.split_once(' ')?;
            (k == key).then(|| value.trim().parse().ok()).flatten()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_v1_and_v2_counters() {
        let root = tempfile::tempdir().expect("tempdir");
        let v1 = root.path().join("memory/berth/a");
        std::fs::create_dir_all(&v1).expect("mkdir");
        std::fs::write(
            v1.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .expect("write");
        assert_eq!(oom_kill_count_under(root.path(), "/berth/a"), Some(2));
        let v2 = root.path().join("berth/b");
        std::fs::create_dir_all(&v2).expect("mkdir");
        std::fs::write(
            v2.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .expect("write");
        assert_eq!(oom_kill_count_under(root.path(), "/berth/b"), Some(1));
        assert_eq!(oom_kill_count_under(root.path(), "/berth/none"), None);
    }

    #[test]
    fn reads_pids_limit_hits() {
        let root = tempfile::tempdir().expect("tempdir");
        let v1 = root.path().join("pids/berth/a");
        std::fs::create_dir_all(&v1).expect("mkdir");
        std::fs::write(v1.join("pids.events"), "max 17\n").expect("write");
        assert_eq!(pids_limit_hits_under(root.path(), "/berth/a"), Some(17));
        assert_eq!(pids_limit_hits_under(root.path(), "/berth/none"), None);
    }
}
