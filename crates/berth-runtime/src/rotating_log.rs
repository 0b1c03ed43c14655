//! A log file rotated by size: past its limit the file moves to `<name>.1` (replacing the one
//! before) and a new one starts, so a log holds at most about twice the limit on disk. The
//! shim writes each container's log with it, and the server its own log (`--log-file`).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub struct RotatingLog {
    file: File,
    path: PathBuf,
    rotated: PathBuf,
    written: u64,
    max: u64,
}

impl RotatingLog {
    /// Appends to `path` (creating it), rotating into `<path>.1` past `max` bytes.
    pub fn open(path: &Path, max: u64) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let mut rotated = path.as_os_str().to_owned();
        rotated.push(".1");
        Ok(Self::over(
            file,
            path.to_path_buf(),
            PathBuf::from(rotated),
            max,
        ))
    }

    /// Goes on writing `file`, already open at `path`; rotates into `rotated`.
    pub fn over(file: File, path: PathBuf, rotated: PathBuf, max: u64) -> Self {
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        Self {
            file,
            path,
            rotated,
            written,
            max: max.max(1),
        }
    }

    /// Writes all of `bytes`, rotating first when they would take the file past its limit.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.written > 0 && self.written + bytes.len() as u64 > self.max {
            self.rotate();
        }
        self.file.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// On failure the log goes on in the same file: losing no line beats the size limit.
    fn rotate(&mut self) {
        if std::fs::rename(&self.path, &self.rotated).is_err() {
            return;
        }
        // If the new file cannot be opened, the renamed one is still open: keep writing to it.
        if let Ok(file) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            self.file = file;
            self.written = 0;
        }
    }
}

impl Write for RotatingLog {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.append(bytes)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appending_past_the_limit_keeps_the_newest_lines_in_two_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("server.log");
        std::fs::write(&path, "from an earlier run\n").expect("seed");
        let mut log = RotatingLog::open(&path, 64).expect("open");
        for i in 0..20 {
            log.append(format!("line {i:02}\n").as_bytes())
                .expect("append");
        }
        let current = std::fs::read_to_string(&path).expect("current");
        let rotated = std::fs::read_to_string(dir.path().join("server.log.1")).expect("old");
        assert!(
            current.len() <= 64 && rotated.len() <= 64,
            "{current:?} {rotated:?}"
        );
        assert!(current.ends_with("line 19\n"), "{current:?}");
        let first: usize = current[5..7].parse().expect("a numbered line");
        assert!(
            rotated.ends_with(&format!("line {:02}\n", first - 1)),
            "{rotated:?}"
        );
        assert!(!dir.path().join("server.log.2").exists());
    }
}
