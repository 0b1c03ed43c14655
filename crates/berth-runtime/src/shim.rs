//! `berth-shim`: one small monitor process per container (the conmon / containerd-shim
//! model). It creates and starts the container through the OCI runtime, owns the container's
//! stdout and stderr (written with timestamps to the log file), reaps the container's init as
//! a child subreaper, records its exit status and any OOM kill, and removes the runtime's
//! record. It ignores the signals that stop the server, so containers outlive a restart.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::wait::WaitStatus;

use crate::{oom_kill_count, ExitRecord, OciRuntime, RuntimeError, RuntimeKind, ShimFiles};

/// What one shim needs to know; passed as command-line flags of `berth shim`.
#[derive(Debug, Clone)]
pub struct ShimConfig {
    pub id: String,
    pub bundle: PathBuf,
    /// The container's state directory (see [`ShimFiles`]).
    pub dir: PathBuf,
    pub runtime: RuntimeKind,
    pub runtime_binary: PathBuf,
    pub runtime_root: PathBuf,
    pub cgroups_path: String,
    /// The container's log moves to `container.log.1` (replacing the one before) when it
    /// would pass this size.
    pub log_max_bytes: u64,
}

/// The log size at which a shim rotates when the server names none.
pub const DEFAULT_LOG_MAX_BYTES: u64 = 16 << 20;

impl ShimConfig {
    /// The flags `berth-shim` takes.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--id".into(),
            self.id.clone(),
            "--bundle".into(),
            self.bundle.display().to_string(),
            "--dir".into(),
            self.dir.display().to_string(),
            "--runtime".into(),
            self.runtime.as_str().into(),
            "--runtime-binary".into(),
            self.runtime_binary.display().to_string(),
            "--runtime-root".into(),
            self.runtime_root.display().to_string(),
            "--cgroup".into(),
            self.cgroups_path.clone(),
            "--log-max-bytes".into(),
            self.log_max_bytes.to_string(),
        ]
    }

    /// Reads the flags [`ShimConfig::to_args`] wrote.
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut flags = std::collections::HashMap::new();
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            flags.insert(flag, value);
        }
        let mut take = |flag: &str| {
            flags
                .remove(flag)
                .ok_or_else(|| format!("{flag} is missing"))
        };
        let config = ShimConfig {
            id: take("--id")?,
            bundle: take("--bundle")?.into(),
            dir: take("--dir")?.into(),
            runtime: take("--runtime")?
                .parse()
                .map_err(|e| format!("--runtime: {e}"))?,
            runtime_binary: take("--runtime-binary")?.into(),
            runtime_root: take("--runtime-root")?.into(),
            cgroups_path: take("--cgroup")?,
            log_max_bytes: match flags.remove("--log-max-bytes") {
                Some(n) => n
                    .parse()
                    .map_err(|e| format!("--log-max-bytes {n:?}: {e}"))?,
                None => DEFAULT_LOG_MAX_BYTES,
            },
        };
        match flags.keys().next() {
            Some(unknown) => Err(format!("unknown flag {unknown}")),
            None => Ok(config),
        }
    }

    fn runtime(&self) -> OciRuntime {
        OciRuntime::new(self.runtime, &self.runtime_binary, &self.runtime_root)
    }
}

const READY_PREFIX: &str = "started ";
const FAILED_PREFIX: &str = "failed ";

/// Starts a detached shim for the container (`exe` is the berth-shim binary) and waits until the
/// container runs. Returns the host pid of the container's init.
pub fn launch(exe: &Path, config: &ShimConfig) -> Result<i32, RuntimeError> {
    let files = ShimFiles::new(&config.dir);
    let shim_log =
        File::create(files.shim_log()).map_err(crate::error::io_err(files.shim_log()))?;
    let mut cmd = Command::new(exe);
    cmd.args(config.to_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(shim_log))
        .env_clear()
        .env("PATH", berth_api::DEFAULT_PATH);
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent; the shim gets
    // its own session so signals aimed at the server's process group never reach it.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().map_err(|source| RuntimeError::Spawn {
        binary: exe.display().to_string(),
        source,
    })?;
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = BufReader::new(stdout).read_line(&mut line);
    }
    // The process we started forked the real shim and exits at once (see `run`), so this
    // wait is short and the server keeps no thread or zombie per container.
    let _ = child.wait();
    let line = line.trim();
    if let Some(pid) = line.strip_prefix(READY_PREFIX) {
        return pid.parse().map_err(|_| RuntimeError::Shim {
            id: config.id.clone(),
            message: format!("unreadable ready line {line:?}"),
        });
    }
    let message = match line.strip_prefix(FAILED_PREFIX) {
        Some(msg) => msg.to_string(),
        None => {
            let log = std::fs::read_to_string(files.shim_log()).unwrap_or_default();
            format!("exited before the container started: {}", log.trim())
        }
    };
    Err(RuntimeError::Shim {
        id: config.id.clone(),
        message,
    })
}

/// The body of `berth-shim`. Returns the shim's exit code.
pub fn run(config: &ShimConfig) -> i32 {
    // Detach from the server: the first process exits and the server reaps it; the forked
    // shim is adopted by init (or the host's subreaper) and owns the container from here.
    // SAFETY: no other thread exists yet in this process (the shim starts single-threaded
    // and spawns its log copiers later), so the child may run arbitrary code after fork.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => return 0,
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(e) => {
            report(&format!("{FAILED_PREFIX}cannot fork the shim: {e}"));
            return 1;
        }
    }
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGPIPE,
    ] {
        // SAFETY: SIG_IGN installs no handler code; ignoring is always sound.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
    let files = ShimFiles::new(&config.dir);
    if let Err(e) = files.write_shim_pid() {
        report(&format!("{FAILED_PREFIX}{e}"));
        return 1;
    }
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        report(&format!(
            "{FAILED_PREFIX}cannot become a child subreaper: {e}"
        ));
        return 1;
    }
    let runtime = config.runtime();
    let log = match OpenOptions::new()
        .create(true)
        .append(true)
        .open(files.log())
    {
        Ok(f) => f,
        Err(e) => {
            report(&format!(
                "{FAILED_PREFIX}opening {}: {e}",
                files.log().display()
            ));
            return 1;
        }
    };
    let (pid, stdout, stderr) = match create_and_start(config, &runtime, &files) {
        Ok(started) => started,
        Err(message) => {
            let _ = runtime.delete(&config.id);
            report(&format!("{FAILED_PREFIX}{message}"));
            return 1;
        }
    };
    report(&format!("{READY_PREFIX}{pid}"));
    silence_stdout();

    // Past --log-max-bytes it moves to container.log.1, so a pod holds at most twice that.
    let log = crate::RotatingLog::over(log, files.log(), files.rotated_log(), config.log_max_bytes);
    let status = crate::log_pump::run(pid, stdout, stderr, log, true);
    let (exit_code, signal) = match status {
        WaitStatus::Exited(_, code) => (code, None),
        WaitStatus::Signaled(_, sig, _) => (128 + sig as i32, Some(sig as i32)),
        _ => (255, None),
    };
    let oom_killed = oom_kill_count(&config.cgroups_path).unwrap_or(0) > 0;
    let pids_limited = crate::pids_limit_hits(&config.cgroups_path).unwrap_or(0) > 0;
    let record = ExitRecord {
        exit_code,
        signal,
        oom_killed,
        // The bundle sits in the sandbox directory, beside the capped disk if there is one.
        disk_full: config.bundle.parent().is_some_and(crate::disk::is_full),
        pids_limited,
        finished_at: time::OffsetDateTime::now_utc().unix_timestamp(),
    };
    if let Err(e) = files.write_exit(&record) {
        eprintln!("berth-shim {}: recording exit: {e}", config.id);
    }
    if let Err(e) = runtime.delete(&config.id) {
        eprintln!("berth-shim {}: {e}", config.id);
    }
    0
}

/// Creates and starts the container (one `runc run --detach`) with its output going to two
/// pipes; returns the init's pid and the pipes' read ends.
fn create_and_start(
    config: &ShimConfig,
    runtime: &OciRuntime,
    files: &ShimFiles,
) -> Result<(i32, OwnedFd, OwnedFd), String> {
    let (out_r, out_w) = pipe().map_err(|e| format!("creating the stdout pipe: {e}"))?;
    let (err_r, err_w) = pipe().map_err(|e| format!("creating the stderr pipe: {e}"))?;
    let explain = |e: RuntimeError| match files.runtime_error() {
        Some(reason) => reason,
        None => e.to_string(),
    };
    runtime
        .run_detached(
            &config.id,
            &config.bundle,
            &files.pid(),
            &files.runtime_log(),
            out_w,
            err_w,
        )
        .map_err(explain)?;
    let pid = ShimFiles::read_pid(&files.pid())
        .ok_or_else(|| format!("{} wrote no pid file", runtime.kind().default_binary()))?;
    Ok((pid, out_r, err_r))
}

fn pipe() -> nix::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
}

fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// After the ready line nobody reads the shim's stdout; point it at /dev/null.
fn silence_stdout() {
    if let Ok(null) = File::options().write(true).open("/dev/null") {
        let mut stdout = std::io::stdout();
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = stdout.flush();
    }
}
