//! The shim's one loop, on one thread: copy the container's stdout and stderr into its log,
//! a timestamped line per output line, and reap children until the container's init exits.
//! No threads and no allocator arenas beyond the main one keep a shim's own memory (USS)
//! under 1 MiB, which matters at hundreds of pods per host.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::RotatingLog;

/// An endless line is cut here, so it cannot exhaust the shim's memory.
const MAX_LINE: usize = 64 * 1024;
/// How long the runtime's other processes and the pipes get after the container ended.
const STRAGGLER_WAIT: Duration = Duration::from_secs(2);
/// Reap adopted orphans (runtime helpers) at least this often while the container runs.
const REAP_EVERY: Duration = Duration::from_secs(10);

/// A pidfd for `pid`: readable once the process has exited.
pub fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1; it
    // touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| std::io::Error::other("descriptor out of range"))?;
    // SAFETY: the kernel just returned this descriptor to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

struct Stream {
    name: &'static str,
    pipe: Option<File>,
    pending: Vec<u8>,
}

impl Stream {
    fn new(name: &'static str, fd: OwnedFd) -> Self {
        Stream {
            name,
            pipe: Some(File::from(fd)),
            pending: Vec::new(),
        }
    }

    /// Reads what is there; writes out every complete (or over-long) line.
    fn pump(&mut self, log: &mut RotatingLog) {
        let Some(pipe) = self.pipe.as_mut() else {
            return;
        };
        let mut chunk = [0u8; 16 * 1024];
        match pipe.read(&mut chunk) {
            Ok(0) | Err(_) => {
                self.pipe = None;
                self.flush(log);
            }
            Ok(n) => {
                self.pending.extend_from_slice(&chunk[..n]);
                while let Some(end) = self.line_end() {
                    let rest = self.pending.split_off(end);
                    let line = std::mem::replace(&mut self.pending, rest);
                    write_line(log, self.name, &line);
                }
            }
        }
    }

    fn line_end(&self) -> Option<usize> {
        match self.pending.iter().position(|b| *b == b'\n') {
            Some(i) if i < MAX_LINE => Some(i + 1),
            _ if self.pending.len() >= MAX_LINE => Some(MAX_LINE),
            _ => None,
        }
    }

    /// A last line with no newline.
    fn flush(&mut self, log: &mut RotatingLog) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            write_line(log, self.name, &line);
        }
    }
}

fn write_line(log: &mut RotatingLog, stream: &str, raw: &[u8]) {
    let text = String::from_utf8_lossy(raw);
    let text = text.trim_end_matches(['\n', '\r']);
    let line = format!("{} {stream} {text}\n", timestamp());
    // A full disk loses the line; the container goes on.
    let _ = log.append(line.as_bytes());
}

fn timestamp() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Copies both streams into `log` until the container's init `pid` has exited, its output
/// is drained and the runtime's helpers are reaped (or [`STRAGGLER_WAIT`] passed). Returns
/// the init's status; `StillAlive` when it was gone without one. `adopted` reaps every child
/// (the shim is a subreaper); without it only `pid` is waited for.
pub fn run(
    pid: i32,
    stdout: OwnedFd,
    stderr: OwnedFd,
    mut log: RotatingLog,
    adopted: bool,
) -> WaitStatus {
    let mut streams = [Stream::new("stdout", stdout), Stream::new("stderr", stderr)];
    let exit_fd = pidfd_open(pid).ok();
    let mut status: Option<WaitStatus> = None;
    let mut deadline: Option<Instant> = None;
    loop {
        let children_left = reap(pid, &mut status, adopted);
        if status.is_some() || !children_left {
            deadline.get_or_insert_with(|| Instant::now() + STRAGGLER_WAIT);
        }
        let drained = streams.iter().all(|s| s.pipe.is_none());
        let past = deadline.is_some_and(|d| Instant::now() >= d);
        if (deadline.is_some() && drained && !children_left) || past {
            break;
        }
        let timeout = match deadline {
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(5)),
            None => REAP_EVERY,
        };
        let mut fds: Vec<PollFd> = streams
            .iter()
            .filter_map(|s| s.pipe.as_ref())
            .map(|p| PollFd::new(p.as_fd(), PollFlags::POLLIN))
            .collect();
        let watch_exit = status.is_none();
        if let (Some(fd), true) = (&exit_fd, watch_exit) {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
        }
        let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        let ready: Vec<bool> = match poll(&mut fds, timeout) {
            Ok(_) => fds
                .iter()
                .map(|fd| fd.revents().is_some_and(|r| !r.is_empty()))
                .collect(),
            Err(_) => Vec::new(),
        };
        drop(fds);
        let mut i = 0;
        for stream in streams.iter_mut() {
            if stream.pipe.is_some() {
                if ready.get(i).copied().unwrap_or(false) {
                    stream.pump(&mut log);
                }
                i += 1;
            }
        }
    }
    for stream in streams.iter_mut() {
        stream.flush(&mut log);
    }
    status.unwrap_or(WaitStatus::StillAlive)
}

/// Reaps every child that has ended, keeping the init's status. Returns whether any child
/// is left.
fn reap(pid: i32, status: &mut Option<WaitStatus>, adopted: bool) -> bool {
    if !adopted && status.is_some() {
        return false;
    }
    let whom = Pid::from_raw(if adopted { -1 } else { pid });
    loop {
        match waitpid(whom, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return true,
            Ok(s @ (WaitStatus::Exited(p, _) | WaitStatus::Signaled(p, _, _)))
                if p.as_raw() == pid =>
            {
                *status = Some(s);
                if !adopted {
                    return false;
                }
            }
            Ok(_) | Err(nix::Error::EINTR) => {}
            // No children left.
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn container_log(files: &crate::ShimFiles, max: u64) -> RotatingLog {
        let file = File::create(files.log()).expect("log");
        RotatingLog::over(file, files.log(), files.rotated_log(), max)
    }

    fn pipe() -> (OwnedFd, OwnedFd) {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe")
    }

    #[test]
    fn a_log_past_its_limit_is_rotated_keeping_every_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = crate::ShimFiles::new(dir.path());
        let mut log = container_log(&files, 100);
        for i in 0..10 {
            write_line(&mut log, "stdout", format!("line {i}").as_bytes());
        }
        let current = std::fs::read_to_string(files.log()).expect("current");
        let rotated = std::fs::read_to_string(files.rotated_log()).expect("rotated");
        assert!(
            current.len() <= 100 && rotated.len() <= 100,
            "{current:?} {rotated:?}"
        );
        assert!(current.ends_with(" stdout line 9\n"), "{current:?}");
        // The older part holds the lines just before the current file's first one.
        let first_current: usize = current
            .lines()
            .next()
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .expect("a numbered line");
        assert!(
            rotated.ends_with(&format!(" stdout line {}\n", first_current - 1)),
            "{rotated:?}"
        );
    }

    #[test]
    fn lines_of_both_streams_land_in_the_log_with_the_exit_status() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log_path = crate::ShimFiles::new(dir.path()).log();
        let log = container_log(&crate::ShimFiles::new(dir.path()), 1 << 30);
        let ((out_r, out_w), (err_r, err_w)) = (pipe(), pipe());
        let long = "x".repeat(MAX_LINE + 10);
        #[allow(clippy::zombie_processes)]
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo one; echo two >&2; printf '{long}'; printf tail; exit 3"
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out_w))
            .stderr(Stdio::from(err_w))
            .spawn()
            .expect("spawn");
        // Not `adopted`: other tests of this process have children of their own.
        let status = run(child.id() as i32, out_r, err_r, log, false);
        // Reaped by `run` already; the Child handle only has nothing left to wait for.
        drop(child);
        assert!(matches!(status, WaitStatus::Exited(_, 3)), "{status:?}");
        let text = std::fs::read_to_string(&log_path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{:?}", &text[..200.min(text.len())]);
        assert!(lines.iter().any(|l| l.ends_with(" stdout one")));
        assert!(lines.iter().any(|l| l.ends_with(" stderr two")));
        assert!(lines
            .iter()
            .any(|l| l.ends_with(&format!(" stdout {}", "x".repeat(MAX_LINE)))));
        assert!(
            lines.iter().any(|l| l.ends_with(" stdout xxxxxxxxxxtail")),
            "the cut line goes on"
        );
    }
}
