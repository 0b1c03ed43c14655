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

    pub fn read_pid(path: &Path) -> Option<i32> {
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    }

    /// Whether the shim process is still alive.
    pub fn shim_alive(&self) -> bool {
        Self::read_pid(&self.shim_pid())
            .map(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok())
            .unwrap_or(false)
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
            finished_at: 5,
        };
        files.write_exit(&rec).expect("writes");
        assert_eq!(files.read_exit(), Some(rec));
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
