//! Shared harness pieces: a real registry, test images, the berth server, an API client and
//! the leak checker.

pub mod client;
pub mod database;
pub mod fault_proxy;
pub mod harness;
pub mod images;
pub mod leaks;
pub mod netns;
pub mod registry;
pub mod server;

use std::fmt::Display;
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

/// Errors in the harness are messages for a human reading the test output.
pub type Res<T> = Result<T, String>;

/// Adds context to an error, like anyhow's `context`, for `Res`.
pub trait Context<T> {
    fn ctx(self, what: impl Display) -> Res<T>;
    fn with_ctx<F: FnOnce() -> String>(self, what: F) -> Res<T>;
}

impl<T, E: Display> Context<T> for Result<T, E> {
    fn ctx(self, what: impl Display) -> Res<T> {
        self.map_err(|e| format!("{what}: {e}"))
    }

    fn with_ctx<F: FnOnce() -> String>(self, what: F) -> Res<T> {
        self.map_err(|e| format!("{}: {e}", what()))
    }
}

/// `ensure!(cond, "message {}", x)`: returns `Err(message)` from the enclosing function when the
/// condition does not hold.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// Timeouts, generous because the machine may be busy compiling while the suite runs.
pub mod timeouts {
    use std::time::Duration;

    /// From create to RUNNING, including a first pull.
    pub const START: Duration = Duration::from_secs(120);
    /// From RUNNING to the app answering through the ingress.
    pub const HTTP_READY: Duration = Duration::from_secs(30);
    /// From a stop request (or exit) to a terminal state.
    pub const STOP: Duration = Duration::from_secs(45);
    /// A CLI command that waits for a container.
    pub const CLI: Duration = Duration::from_secs(240);
    /// An image build, including a first build of the default base image.
    pub const BUILD: Duration = Duration::from_secs(240);
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> Res<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").ctx("bind 127.0.0.1:0")?;
    Ok(listener.local_addr().ctx("local_addr")?.port())
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A random lower-case hex string of `bytes * 2` characters, from the kernel's generator.
/// `text` percent-encoded for a URL path segment or query value.
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)) {
        Ok(()) => hex::encode(buf),
        Err(e) => panic!("reading /dev/urandom failed: {e}"),
    }
}

/// Polls `probe` every `interval` until it returns `Some` or `timeout` passes.
pub fn poll<T>(
    timeout: Duration,
    interval: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(interval);
    }
}

/// The last `lines` lines of a text file, for failure messages.
pub fn tail_file(path: &Path, lines: usize) -> String {
    const MAX_BYTES: u64 = 64 * 1024;
    let read = || -> std::io::Result<String> {
        let mut f = std::fs::File::open(path)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES)))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    match read() {
        Ok(text) => tail_lines(&text, lines),
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

pub fn tail_lines(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Indents a multi-line text block for nesting in a failure message.
pub fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs a command to completion and returns its stdout, failing on a non-zero exit.
pub fn command_output(program: &str, args: &[&str]) -> Res<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .with_ctx(|| format!("run {program} {}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
