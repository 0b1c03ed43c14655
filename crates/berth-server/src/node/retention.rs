//! Logs of ended containers are kept for `--log-retention-hours`, then their directories
//! (log, rotated log, exit record, shim log) are removed. A container counts as ended
//! once its shim wrote `exit.json`; the age is that file's.

use std::path::Path;
use std::time::{Duration, SystemTime};

use berth_runtime::ShimFiles;

/// How often the containers directory is swept, the first time this long after start.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);
pub const FIRST_SWEEP: Duration = Duration::from_secs(60);

/// Removes the directories under `containers_dir` of containers that ended more than
/// `retention` before `now`; returns how many.
pub fn prune_ended(containers_dir: &Path, retention: Duration, now: SystemTime) -> usize {
    let Ok(entries) = std::fs::read_dir(containers_dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let files = ShimFiles::new(entry.path());
        let ended_at = std::fs::metadata(files.exit()).and_then(|m| m.modified());
        let Ok(ended_at) = ended_at else {
            continue;
        };
        let old = now
            .duration_since(ended_at)
            .is_ok_and(|age| age > retention);
        if old && !files.shim_alive() {
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) => tracing::warn!("removing {}: {e}", entry.path().display()),
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_containers_ended_long_enough_ago_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let day = Duration::from_secs(86_400);
        let now = SystemTime::now();
        let ended = |name: &str, ago: Duration| {
            let files = ShimFiles::new(dir.path().join(name));
            std::fs::create_dir_all(files.dir()).expect("dir");
            std::fs::write(files.log(), "a line\n").expect("log");
            let exit = std::fs::File::create(files.exit()).expect("exit");
            exit.set_modified(now - ago).expect("mtime");
        };
        ended("old", 3 * day);
        ended("recent", Duration::from_secs(60));
        // Still running: no exit record.
        let running = ShimFiles::new(dir.path().join("running"));
        std::fs::create_dir_all(running.dir()).expect("dir");
        std::fs::write(running.log(), "a line\n").expect("log");

        assert_eq!(prune_ended(dir.path(), day, now), 1);
        assert!(!dir.path().join("old").exists());
        assert!(dir.path().join("recent").join("container.log").exists());
        assert!(running.log().exists());
    }
}
