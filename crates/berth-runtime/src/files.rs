//! The shim's contract with the server: plain files in the container's directory, readable
//! by a server that restarted and is no longer the shim's parent.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::io_err;
use crate::RuntimeError;

/// How the container's main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Exit code as a shell reports it: the status, or 128 + signal number.
    pub exit_code: i32,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    /// The memory cgroup recorded an OOM kill.
    pub oom_killed: bool,
    /// The pod's capped disk had no room left when it ended.
    #[serde(default)]
    pub disk_full: bool,
    /// A fork failed at the pod's pids limit while it ran (a fork bomb, or a runaway pool).
    #[serde(default)]
    pub pids_limited: bool,
    /// Unix seconds.
    pub finished_at: i64,
}

#[derive(Debug, Clone)]
pub struct ShimFiles {
    dir: PathBuf,
}

impl ShimFiles {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ShimFiles { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Timestamped stdout/stderr of the container, one line per output line.
    pub fn log(&self) -> PathBuf {
        self.dir.join("container.log")
    }

    /// The log's older part, once it was rotated.
    pub fn rotated_log(&self) -> PathBuf {
        self.dir.join("container.log.1")
    }

    /// The shim's own diagnostics.
    pub fn shim_log(&self) -> PathBuf {
        self.dir.join("shim.log")
    }

    /// Host pid of the container's init process.
    pub fn pid(&self) -> PathBuf {
        self.dir.join("pid")
    }

    /// Pid of the shim itself.
    pub fn shim_pid(&self) -> PathBuf {
        self.dir.join("shim.pid")
    }

    pub fn exit(&self) -> PathBuf {
        self.dir.join("exit.json")
    }

    /// The runtime's own log (JSON lines), where it explains failures.
    pub fn runtime_log(&self) -> PathBuf {
        self.dir.join("runtime.log")
    }

    pub fn read_exit(&self) -> Option<ExitRecord> {
        let text = std::fs::read_to_string(self.exit()).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn write_exit(&self, record: &ExitRecord) -> Result<(), RuntimeError> {
        let path = self.exit();
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec(record).map_err(|e| RuntimeError::Shim {
            id: self.dir.display().to_string(),
            message: e.to_string(),
        })?;
        std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    /// The pid in a pid file (the first word; the shim's file also holds its start time).
    pub fn read_pid(path: &Path) -> Option<i32> {
        std::fs::read_to_string(path)
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Records the running shim: its pid and its start time, so a later reader is not fooled
    /// by another process that got the same pid (after a reboot, say).
    pub fn write_shim_pid(&self) -> Result<(), RuntimeError> {
        let pid = std::process::id() as i32;
        let started = process_start_time(pid).unwrap_or_default();
        let path = self.shim_pid();
        std::fs::write(&path, format!("{pid} {started}")).map_err(io_err(&path))
    }

    /// Whether the shim process is still alive: its pid exists and started when it did.
    pub fn shim_alive(&self) -> bool {
        let Ok(text) = std::fs::read_to_string(self.shim_pid()) else {
            return false;
        };
        let mut words = text.split_whitespace();
        let Some(pid) = words.next().and_then(|p| p.parse::<i32>().ok()) else {
            return false;
        };
        match words.next().and_then(|s| s.parse::<u64>().ok()) {
            Some(started) => process_start_time(pid) == Some(started),
            None => nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok(),
        }
    }

    /// The last error the runtime logged, to explain a failed create or start.
    pub fn runtime_error(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.runtime_log()).ok()?;
        text.lines().rev().find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            (v.get("level")?.as_str()? == "error")
                .then(|| v.get("msg")?.as_str().map(str::to_string))
                .flatten()
        })
    }
}

/// A process's start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields after it are plain.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_record_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = ShimFiles::new(dir.path());
        assert_eq!(files.read_exit(), None);
        let rec = ExitRecord {
            exit_code: 137,
            signal: Some(9),
            oom_killed: true,
            disk_full: true,
            pids_limited: true,
            finished_at: 5,
        };
        files.write_exit(&rec).expect("writes");
        assert_eq!(files.read_exit(), Some(rec));
    }

    #[test]
    fn a_reused_pid_is_not_the_shim() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = ShimFiles::new(dir.path());
        assert!(!files.shim_alive());
        files.write_shim_pid().expect("writes");
        assert!(files.shim_alive(), "this process is alive");
        assert_eq!(
            ShimFiles::read_pid(&files.shim_pid()),
            Some(std::process::id() as i32)
        );
        // Same pid, another start time: some other process now holds the number.
        std::fs::write(files.shim_pid(), format!("{} 1", std::process::id())).expect("write");
        assert!(!files.shim_alive());
    }

    #[test]
    fn runtime_error_is_the_last_error_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = ShimFiles::new(dir.path());
        std::fs::write(
            files.runtime_log(),
            "{\"level\":\"info\",\"msg\":\"hi\"}\n{\"level\":\"error\",\"msg\":\"exec: \\\"nope\\\": executable file not found in $PATH\"}\n",
        )
        .expect("write");
        assert_eq!(
            files.runtime_error().as_deref(),
            Some("exec: \"nope\": executable file not found in $PATH")
        );
    }
}
