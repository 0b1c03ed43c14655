//! The server's log writer. The ingress logs a line per request, so a line must cost the
//! request no more than a copy into memory: lines are appended to a shared buffer and a
//! writer thread sends the buffer to stderr, or to the `--log-file` (rotated by size), every
//! [`FLUSH_EVERY`] (sooner once it is large).
//! A writer that flushes whenever it runs dry (tracing-appender's) wakes a thread and makes
//! a write syscall for nearly every line under load, which cost the ingress ~15% of its
//! requests/s. Lines are never dropped: past [`MAX_BUFFERED`] the logging thread writes the
//! buffer out itself, and the guard writes what is left at exit.

use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use berth_runtime::RotatingLog;
use tracing_subscriber::fmt::MakeWriter;

const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Past this the writer thread is woken instead of waiting for its tick.
const WAKE_AT: usize = 256 * 1024;
/// Past this a logging thread writes the buffer itself (the log falls behind: block, not drop).
const MAX_BUFFERED: usize = 4 * 1024 * 1024;

pub struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Where the lines go. Taken after `state` when both are held, never before.
    output: Mutex<Box<dyn Write + Send>>,
}

impl Shared {
    fn new(output: Box<dyn Write + Send>) -> Self {
        Shared {
            state: Mutex::default(),
            wake: Condvar::new(),
            output: Mutex::new(output),
        }
    }
}

#[derive(Default)]
struct State {
    buffer: Vec<u8>,
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn output(&self) -> MutexGuard<'_, Box<dyn Write + Send>> {
        self.output.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Hands out writers into the shared buffer; give it to `tracing_subscriber::fmt().with_writer`.
#[derive(Clone)]
pub struct LogSink(Arc<Shared>);

/// Stops the writer thread and writes out what is buffered when dropped.
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A sink writing to stderr, and the guard that flushes it at exit.
pub fn stderr() -> (LogSink, LogGuard) {
    start(Box::new(io::stderr()))
}

/// A sink appending to `path`, which moves to `<path>.1` past `max_bytes`.
pub fn file(path: &Path, max_bytes: u64) -> io::Result<(LogSink, LogGuard)> {
    Ok(start(Box::new(RotatingLog::open(path, max_bytes)?)))
}

fn start(output: Box<dyn Write + Send>) -> (LogSink, LogGuard) {
    let shared = Arc::new(Shared::new(output));
    let writer = shared.clone();
    let thread = std::thread::Builder::new()
        .name("berth-log".into())
        .spawn(move || write_out(&writer))
        .ok();
    (LogSink(shared.clone()), LogGuard { shared, thread })
}

fn write_out(shared: &Shared) {
    let mut spare = Vec::new();
    loop {
        let mut state = shared.lock();
        if !state.closed && state.buffer.len() < WAKE_AT {
            state = shared
                .wake
                .wait_timeout(state, FLUSH_EVERY)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let closed = state.closed;
        std::mem::swap(&mut state.buffer, &mut spare);
        drop(state);
        if !spare.is_empty() {
            // A log that cannot be written has nowhere to report it.
            let mut out = shared.output();
            let _ = out.write_all(&spare).and_then(|()| out.flush());
            spare.clear();
        }
        if closed {
            return;
        }
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // No writer thread (it could not start, or lines came after it ended): write here.
        let rest = std::mem::take(&mut self.shared.lock().buffer);
        let _ = self.shared.output().write_all(&rest);
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = &'a Shared;

    fn make_writer(&'a self) -> Self::Writer {
        &self.0
    }
}

impl Write for &Shared {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut state = self.lock();
        if state.buffer.len() + line.len() > MAX_BUFFERED || state.closed {
            let mut out = self.output();
            out.write_all(&state.buffer)?;
            state.buffer.clear();
            out.write_all(line)?;
            return Ok(line.len());
        }
        state.buffer.extend_from_slice(line);
        if state.buffer.len() >= WAKE_AT {
            self.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_reach_the_output_in_order_and_all_of_them_by_the_end() {
        let out = Arc::new(Mutex::new(Vec::new()));
        struct Out(Arc<Mutex<Vec<u8>>>);
        impl Write for Out {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0.lock().expect("lock").extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let shared = Arc::new(Shared::new(Box::new(Out(out.clone()))));
        let writer = {
            let shared = shared.clone();
            std::thread::spawn(move || write_out(&shared))
        };
        let mut expected = Vec::new();
        for i in 0..20_000 {
            let line = format!("line {i}\n");
            (&*shared).write_all(line.as_bytes()).expect("write");
            expected.extend_from_slice(line.as_bytes());
        }
        shared.lock().closed = true;
        shared.wake.notify_one();
        writer.join().expect("writer thread");
        assert_eq!(*out.lock().expect("lock"), expected);
    }
}
