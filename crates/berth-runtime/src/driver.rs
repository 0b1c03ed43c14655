//! A typed driver for OCI runtime binaries (runc, gVisor's runsc): options become flags, the
//! binary is configurable, and a failed command keeps its stderr.

use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::error::io_err;
use crate::RuntimeError;

/// How often a foreground run checks for its end and for cancellation.
const CAPTURE_POLL: Duration = Duration::from_millis(50);

/// Which OCI runtime runs the containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// runc: native namespaces and cgroups, fastest start.
    Runc,
    /// gVisor's runsc: a user-space kernel between the app and the host, for untrusted code.
    Gvisor,
}

impl RuntimeKind {
    pub const ALL: [RuntimeKind; 2] = [RuntimeKind::Runc, RuntimeKind::Gvisor];

    /// Where this runtime's usual binary is installed: on `PATH`, or failing that on berth's
    /// default path.
    pub fn find_binary(self) -> Option<PathBuf> {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .chain(berth_api::DEFAULT_PATH.split(':').map(PathBuf::from))
            .map(|dir| dir.join(self.default_binary()))
            .find(|path| path.is_file())
    }

    /// The runtimes whose binaries are installed.
    pub fn installed() -> Vec<RuntimeKind> {
        RuntimeKind::ALL
            .into_iter()
            .filter(|k| k.find_binary().is_some())
            .collect()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Runc => "runc",
            RuntimeKind::Gvisor => "gvisor",
        }
    }

    pub fn default_binary(self) -> &'static str {
        match self {
            RuntimeKind::Runc => "runc",
            RuntimeKind::Gvisor => "runsc",
        }
    }

    /// Flags every invocation needs. runsc's own network stack fails its root-namespace check
    /// on these kernels; `--network=host` inside the pod's own network namespace keeps the pod
    /// isolated while using the namespace berth set up. The root filesystem is the host's
    /// overlay, shared with the host (`--overlay2=none`, `--file-access=shared`): files
    /// copied in from outside are seen at once, and what the pod writes lands on the host's
    /// disk, not in the sandbox's memory.
    fn global_args(self) -> &'static [&'static str] {
        match self {
            RuntimeKind::Runc => &[],
            RuntimeKind::Gvisor => &["--network=host", "--overlay2=none", "--file-access=shared"],
        }
    }
}

impl std::str::FromStr for RuntimeKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "runc" => Ok(RuntimeKind::Runc),
            "gvisor" | "runsc" => Ok(RuntimeKind::Gvisor),
            other => Err(format!(
                "unknown runtime {other:?} (expected runc or gvisor)"
            )),
        }
    }
}

/// One OCI runtime binary with its state root.
#[derive(Debug, Clone)]
pub struct OciRuntime {
    kind: RuntimeKind,
    binary: PathBuf,
    root: PathBuf,
}

impl OciRuntime {
    pub fn new(kind: RuntimeKind, binary: impl Into<PathBuf>, root: impl Into<PathBuf>) -> Self {
        OciRuntime {
            kind,
            binary: binary.into(),
            root: root.into(),
        }
    }

    pub fn kind(&self) -> RuntimeKind {
        self.kind
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn command(&self, log: Option<&Path>) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(&self.root);
        if let Some(log) = log {
            cmd.arg("--log").arg(log).arg("--log-format").arg("json");
        }
        cmd.args(self.kind.global_args());
        cmd.stdin(Stdio::null());
        // The shim ignores the signals that stop the server; the runtime, and through it the
        // container, must start with their defaults, or apps could not be interrupted.
        // SAFETY: signal(2) is async-signal-safe and touches no memory of the parent.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                use nix::sys::signal::{signal, SigHandler, Signal};
                for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
                    signal(sig, SigHandler::SigDfl).map_err(std::io::Error::from)?;
                }
                Ok(())
            });
        }
        // The runtime must not see the server's environment (proxies, tokens, PIP_*).
        cmd.env_clear();
        cmd.env("PATH", berth_api::DEFAULT_PATH);
        cmd
    }

    /// `run --detach`: `create` and `start` in one runtime process, one fewer exec on the
    /// path of every pod start. runc only; others create, then start. The container's
    /// stdout and stderr are the given descriptors.
    pub fn run_detached(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        log: &Path,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> Result<(), RuntimeError> {
        let how = match self.kind {
            RuntimeKind::Runc => Launch::RunDetached,
            _ => Launch::Create,
        };
        self.launch(how, id, bundle, pid_file, log, stdout, stderr)?;
        match how {
            Launch::RunDetached => Ok(()),
            Launch::Create => self.start(id, log),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn launch(
        &self,
        how: Launch,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        log: &Path,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> Result<(), RuntimeError> {
        let mut cmd = self.command(Some(log));
        cmd.args(how.args())
            .arg("--bundle")
            .arg(bundle)
            .arg("--pid-file")
            .arg(pid_file)
            .arg(id)
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr));
        let status = cmd.status().map_err(|source| self.spawn_err(source))?;
        drop(cmd);
        if status.success() {
            Ok(())
        } else {
            Err(self.failure(how.args()[0], id, status.to_string(), String::new()))
        }
    }

    /// Runs the container in the foreground to its end (`runc run`), sending each line of
    /// its combined stdout and stderr to `on_line`, and returns its exit code as a shell
    /// reports it. When `cancelled` becomes true the container is killed. For short-lived
    /// build steps, which need no shim.
    pub fn run_captured(
        &self,
        id: &str,
        bundle: &Path,
        log: &Path,
        on_line: &(dyn Fn(String) + Send + Sync),
        cancelled: &AtomicBool,
    ) -> Result<i32, RuntimeError> {
        let pipe_err = |e: nix::Error| RuntimeError::Shim {
            id: id.to_string(),
            message: format!("output pipe: {e}"),
        };
        let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(pipe_err)?;
        let err_w = out_w.try_clone().map_err(io_err(bundle))?;
        let mut cmd = self.command(Some(log));
        cmd.arg("run")
            .arg("--bundle")
            .arg(bundle)
            .arg(id)
            .stdout(Stdio::from(out_w))
            .stderr(Stdio::from(err_w));
        let mut child = cmd.spawn().map_err(|source| self.spawn_err(source))?;
        // The command holds the write ends until dropped; the reader sees EOF only after.
        drop(cmd);
        let status = std::thread::scope(|scope| {
            let lines = scope.spawn(|| {
                for line in BufReader::new(std::fs::File::from(out_r)).lines() {
                    match line {
                        Ok(line) => on_line(line),
                        Err(_) => break,
                    }
                }
            });
            let status = loop {
                match child.try_wait() {
                    Ok(Some(status)) => break Ok(status),
                    Ok(None) => {}
                    Err(e) => break Err(io_err(bundle)(e)),
                }
                if cancelled.load(Ordering::SeqCst) {
                    let _ = self.kill(id, Signal::SIGKILL, true);
                }
                std::thread::sleep(CAPTURE_POLL);
            };
            let _ = lines.join();
            status
        })?;
        Ok(status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }

    pub fn start(&self, id: &str, log: &Path) -> Result<(), RuntimeError> {
        self.run(self.command(Some(log)).arg("start").arg(id), "start", id)
    }

    /// Sends `signal` to the container's init, or with `all` to every process in it.
    pub fn kill(&self, id: &str, signal: Signal, all: bool) -> Result<(), RuntimeError> {
        let mut cmd = self.command(None);
        cmd.arg("kill");
        if all {
            cmd.arg("--all");
        }
        // By number: runc and runsc both parse numbers, whatever they call the signal.
        self.run(cmd.arg(id).arg((signal as i32).to_string()), "kill", id)
    }

    /// The command that runs `args` in the running container `id` beside its entrypoint, as
    /// its user and under its limits and filters, with `env` added and in `cwd` if given.
    /// Its stdout and stderr are the caller's to set; the runtime stays its parent and
    /// forwards signals to it. With `tty`, the runtime's stdin must be a terminal: runc
    /// gives the command a terminal of its own driven from it (`--tty`); runsc has no such
    /// flag and hands a terminal on its stdin to the command as its terminal.
    pub fn exec_command(
        &self,
        id: &str,
        args: &[String],
        env: &[(String, String)],
        cwd: Option<&str>,
        tty: bool,
    ) -> Command {
        let mut cmd = self.command(None);
        cmd.arg("exec");
        if tty && self.kind == RuntimeKind::Runc {
            cmd.arg("--tty");
        }
        for (key, value) in env {
            cmd.arg("--env").arg(format!("{key}={value}"));
        }
        if let Some(cwd) = cwd {
            cmd.arg("--cwd").arg(cwd);
        }
        // Both runtimes stop reading their own flags at the container id, so the command
        // follows it as it is (a `--` would be taken for the program).
        cmd.arg(id).args(args);
        cmd
    }

    /// `exec --process FILE id`: the process the file describes (see [`tty_process`]).
    pub fn exec_process_command(&self, id: &str, process_file: &Path) -> Command {
        let mut cmd = self.command(None);
        cmd.arg("exec").arg("--process").arg(process_file).arg(id);
        cmd
    }

    /// Removes the runtime's record of the container (and its cgroup). Missing is fine.
    pub fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        match self.run(
            self.command(None).arg("delete").arg("--force").arg(id),
            "delete",
            id,
        ) {
            Err(RuntimeError::Command { stderr, .. })
                if stderr.contains("does not exist") || stderr.contains("not exist") =>
            {
                Ok(())
            }
            other => other,
        }
    }

    /// Whether the runtime still knows the container.
    pub fn exists(&self, id: &str) -> bool {
        self.root.join(id).exists()
    }

    fn run(&self, cmd: &mut Command, action: &str, id: &str) -> Result<(), RuntimeError> {
        let out = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|source| self.spawn_err(source))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(self.failure(
                action,
                id,
                out.status.to_string(),
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ))
        }
    }

    fn spawn_err(&self, source: std::io::Error) -> RuntimeError {
        RuntimeError::Spawn {
            binary: self.binary.display().to_string(),
            source,
        }
    }

    fn failure(&self, action: &str, id: &str, status: String, stderr: String) -> RuntimeError {
        RuntimeError::Command {
            runtime: self.kind.default_binary().to_string(),
            action: action.to_string(),
            id: id.to_string(),
            status,
            stderr,
        }
    }
}

/// The pod's own process from its bundle (user, capabilities, limits, no new privileges)
/// with `args` run instead, `env` added to its environment, in `cwd` if given, on a
/// terminal: for runsc, whose exec has no `--tty`, through `exec --process`.
pub fn tty_process(
    bundle: &Path,
    args: &[String],
    env: &[(String, String)],
    cwd: Option<&str>,
) -> Result<oci_spec::runtime::Process, RuntimeError> {
    let config = bundle.join("config.json");
    let spec = oci_spec::runtime::Spec::load(&config)
        .map_err(|e| RuntimeError::Spec(format!("reading {}: {e}", config.display())))?;
    let mut process = spec
        .process()
        .clone()
        .ok_or_else(|| RuntimeError::Spec(format!("{} has no process", config.display())))?;
    let mut merged: Vec<String> = process
        .env()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|kv| {
            let name = kv.split('=').next().unwrap_or_default();
            !env.iter().any(|(key, _)| key == name)
        })
        .collect();
    merged.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    process.set_args(Some(args.to_vec()));
    process.set_env(Some(merged));
    if let Some(cwd) = cwd {
        process.set_cwd(cwd.into());
    }
    process.set_terminal(Some(true));
    Ok(process)
}

/// How `launch` brings a container up.
#[derive(Debug, Clone, Copy)]
enum Launch {
    /// `create`: set up, the process waiting for `start`.
    Create,
    /// `run --detach`: created and started by one runtime process.
    RunDetached,
}

impl Launch {
    fn args(self) -> &'static [&'static str] {
        match self {
            Launch::Create => &["create"],
            Launch::RunDetached => &["run", "--detach"],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_puts_the_command_after_the_container_id() {
        let rt = OciRuntime::new(RuntimeKind::Gvisor, "runsc", "/state/gvisor");
        let cmd = rt.exec_command(
            "pod-1",
            &["ls".into(), "-l".into()],
            &[("A".into(), "b".into())],
            Some("/work"),
            true,
        );
        let runc_args: Vec<_> = OciRuntime::new(RuntimeKind::Runc, "runc", "/state/runc")
            .exec_command("pod-1", &["sh".into()], &[], None, true)
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            runc_args,
            ["--root", "/state/runc", "exec", "--tty", "pod-1", "sh"]
        );
        let args: Vec<_> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--root",
                "/state/gvisor",
                "--network=host",
                "--overlay2=none",
                "--file-access=shared",
                "exec",
                "--env",
                "A=b",
                "--cwd",
                "/work",
                "pod-1",
                "ls",
                "-l"
            ]
        );
    }

    #[test]
    fn runtime_names() {
        assert_eq!("runc".parse::<RuntimeKind>(), Ok(RuntimeKind::Runc));
        assert_eq!("gvisor".parse::<RuntimeKind>(), Ok(RuntimeKind::Gvisor));
        assert!("crun".parse::<RuntimeKind>().is_err());
    }

    #[test]
    fn failed_command_keeps_stderr() {
        let rt = OciRuntime::new(RuntimeKind::Runc, "/bin/sh", "/nonexistent");
        // `sh --root X kill ID TERM` fails; what matters is that its stderr is kept.
        let err = rt
            .kill("abc", Signal::SIGTERM, false)
            .expect_err("sh is not a runtime");
        match err {
            RuntimeError::Command { stderr, action, .. } => {
                assert_eq!(action, "kill");
                assert!(!stderr.is_empty());
            }
            other => panic!("unexpected error {other}"),
        }
    }
}
