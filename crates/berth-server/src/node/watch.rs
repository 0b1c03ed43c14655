//! Container ends as pushed events: each container's shim is watched through a pidfd, which
//! becomes readable the moment the shim exits (after it wrote the exit record). Nothing is
//! polled per container; the shim's files then say whether the container exited or its shim
//! was lost.

use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Mutex;

use berth_runtime::ShimFiles;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{mpsc, watch};

use super::{NodeEvent, ProcessState};

pub struct ExitWatcher {
    events: mpsc::UnboundedSender<NodeEvent>,
    receiver: Mutex<Option<mpsc::UnboundedReceiver<NodeEvent>>>,
    /// Each watched container's state, for stops waiting on their own container.
    states: Mutex<HashMap<String, watch::Receiver<ProcessState>>>,
}

impl ExitWatcher {
    pub fn new() -> Self {
        let (events, receiver) = mpsc::unbounded_channel();
        ExitWatcher {
            events,
            receiver: Mutex::new(Some(receiver)),
            states: Mutex::default(),
        }
    }

    /// The event stream; the first caller takes it.
    pub fn take_events(&self) -> Option<mpsc::UnboundedReceiver<NodeEvent>> {
        self.receiver
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Watches the shim of `id` until it exits, then sends the container's end. Needs a
    /// Tokio runtime. Watching a container twice is harmless: it is watched once.
    pub fn watch(&self, id: &str, files: ShimFiles) {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        if states.contains_key(id) {
            return;
        }
        let (tx, rx) = watch::channel(ProcessState::Running);
        states.insert(id.to_string(), rx);
        drop(states);
        let events = self.events.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            // The pidfd is opened before the liveness check, so a pid reused after the check
            // cannot be the one watched.
            let pidfd = ShimFiles::read_pid(&files.shim_pid()).and_then(|pid| pidfd_open(pid).ok());
            if let Some(fd) = pidfd.filter(|_| files.shim_alive()) {
                // SAFETY: the AsyncFd owns the OwnedFd, which stays open and the same
                // descriptor until the AsyncFd is dropped.
                match unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) } {
                    Ok(fd) => {
                        let _ = fd.readable().await;
                    }
                    Err(e) => {
                        tracing::warn!(container = %id, "cannot watch the shim: {}", e.into_parts().1);
                        return;
                    }
                }
            }
            let state = ended_state(&files);
            let _ = tx.send(state);
            let _ = events.send(NodeEvent {
                container_id: id,
                state,
            });
        });
    }

    /// The watched state of `id`, if it is watched.
    pub fn state(&self, id: &str) -> Option<watch::Receiver<ProcessState>> {
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Forgets a container that was torn down.
    pub fn forget(&self, id: &str) {
        self.states
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

/// What the shim's files say of a container whose shim is gone.
pub fn ended_state(files: &ShimFiles) -> ProcessState {
    match files.read_exit() {
        Some(exit) => ProcessState::Exited(exit),
        None => ProcessState::Lost,
    }
}

/// The container's state from its shim's files: running while the shim lives.
pub fn current_state(files: &ShimFiles) -> ProcessState {
    if let Some(exit) = files.read_exit() {
        ProcessState::Exited(exit)
    } else if files.shim_alive() {
        ProcessState::Running
    } else {
        // The shim may have written its record between the two reads.
        ended_state(files)
    }
}

/// A pidfd for `pid`: readable once the process has exited.
fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_end_of_a_watched_process_is_pushed_with_its_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = ShimFiles::new(dir.path());
        // A stand-in shim: a process that lives until told to end.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let pid = child.id();
        let start = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let started = start[start.rfind(')').expect("name") + 1..]
            .split_whitespace()
            .nth(19)
            .expect("start time")
            .to_string();
        std::fs::write(files.shim_pid(), format!("{pid} {started}")).expect("pid file");

        let watcher = ExitWatcher::new();
        let mut events = watcher.take_events().expect("events");
        assert!(watcher.take_events().is_none(), "one consumer");
        watcher.watch("pod-a", files.clone());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(events.try_recv().is_err(), "no event while it runs");

        let record = berth_runtime::ExitRecord {
            exit_code: 3,
            signal: None,
            oom_killed: false,
            disk_full: false,
            pids_limited: false,
            finished_at: 1,
        };
        files.write_exit(&record).expect("record");
        child.kill().expect("kill");
        child.wait().expect("reap");
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("pushed")
            .expect("event");
        assert_eq!(event.container_id, "pod-a");
        assert_eq!(event.state, ProcessState::Exited(record));
        let state = watcher.state("pod-a").expect("watched");
        assert_eq!(*state.borrow(), ProcessState::Exited(record));
    }

    #[tokio::test]
    async fn a_shim_that_is_already_gone_without_a_record_is_lost() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = ShimFiles::new(dir.path());
        let watcher = ExitWatcher::new();
        let mut events = watcher.take_events().expect("events");
        watcher.watch("pod-b", files);
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("pushed")
            .expect("event");
        assert_eq!(event.state, ProcessState::Lost);
    }
}
