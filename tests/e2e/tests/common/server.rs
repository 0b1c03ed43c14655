//! The real `berth server` process under test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{free_port, loopback, poll, tail_file, Context, Res};

pub const DOMAIN: &str = "berth.test";
pub const BRIDGE: &str = "berthtest0";
// Not the server defaults, so the suite can run beside a berth server on the same machine.
pub const POD_SUBNET_V4: &str = "10.214.0.0/16";
pub const POD_SUBNET_V6: &str = "fd62:6572:7469::/64";
/// Seconds between SIGTERM and SIGKILL when the server stops a container.
pub const STOP_TIMEOUT_SECONDS: u64 = 3;

/// Proxy settings must never send loopback traffic (registry, API, ingress) elsewhere.
pub const NO_PROXY: &str = "127.0.0.1,localhost,::1,.berth.test";

/// The label key every test server registers its node with, its bridge as the value.
pub const NODE_LABEL: &str = "berth-e2e";

/// A test server's pod network: its bridge and pod subnets.
#[derive(Debug, Clone, Copy)]
pub struct PodNetwork {
    pub bridge: &'static str,
    pub subnet_v4: &'static str,
    /// `None` starts the server with `--pod-subnet-v6 none`.
    pub subnet_v6: Option<&'static str>,
}

/// The network of the suite's shared server.
pub const SUITE_NETWORK: PodNetwork = PodNetwork {
    bridge: BRIDGE,
    subnet_v4: POD_SUBNET_V4,
    subnet_v6: Some(POD_SUBNET_V6),
};

/// Where a server started in `dir` keeps its state.
pub fn state_dir_in(dir: &Path) -> PathBuf {
    dir.join("state")
}

/// Where berth's host-local IPAM keeps the address leases of a server's pods: `ipam.dataDir`
/// is `<state dir>/net/ipam` (crates/berth-net/src/cni.rs), one directory per CNI network.
pub fn ipam_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("net").join("ipam")
}

/// The berth binary: `$BERTH_BIN`, else `debug/berth` in the cargo target directory.
pub fn berth_bin() -> Res<PathBuf> {
    if let Some(path) = std::env::var_os("BERTH_BIN") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(format!("BERTH_BIN={} does not exist", path.display()));
        }
        return Ok(path);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let path = target.join("debug/berth");
    if !path.is_file() {
        return Err(format!(
            "the berth binary is missing at {}: build it first (cargo build -p berth) \
             or point BERTH_BIN at it",
            path.display()
        ));
    }
    path.canonicalize()
        .with_ctx(|| format!("canonicalize {}", path.display()))
}

/// What a process holds: resident memory (VmRSS) and open file descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessUsage {
    pub rss_kib: u64,
    pub fds: usize,
}

impl ProcessUsage {
    pub fn of(pid: u32) -> Res<ProcessUsage> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_ctx(|| format!("read /proc/{pid}/status"))?;
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))?;
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .with_ctx(|| format!("list /proc/{pid}/fd"))?
            .count();
        Ok(ProcessUsage { rss_kib, fds })
    }

    pub fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }
}

pub struct Server {
    pub bin: PathBuf,
    pub api: SocketAddr,
    pub ingress: SocketAddr,
    pub state_dir: PathBuf,
    pub profile: PathBuf,
    pub log: PathBuf,
    pub token: String,
    /// The gateway URL written to the profile.
    pub gateway: String,
    pub network: PodNetwork,
    /// The registry spoken to over plain HTTP, which also mirrors Docker Hub.
    registry: String,
    /// The working directory the server runs in.
    dir: PathBuf,
    /// Flags beyond the usual ones (TLS, for instance).
    extra_args: Vec<String>,
    child: Mutex<Option<Child>>,
    /// After a hot restart: the process that took over (a child of the old one, not ours).
    successor: Mutex<Option<u32>>,
}

/// The environment a test server runs in: its own profile, no client settings of the
/// machine, and no proxy for loopback.
pub fn server_env<'a>(cmd: &'a mut Command, profile: &Path) -> &'a mut Command {
    cmd.env("BERTH_PROFILE", profile)
        .env(
            "RUST_LOG",
            "info,berth_proxy::serve=debug,berth_proxy::upgrade=debug",
        )
        .env("NO_PROXY", NO_PROXY)
        .env("no_proxy", NO_PROXY)
        .env_remove("BERTH_GATEWAY")
        .env_remove("BERTH_TOKEN")
}

impl Server {
    /// The host's address on the pod bridge (host-local gives the subnet's first address to
    /// the gateway).
    pub fn gateway_v4(&self) -> String {
        self.network.subnet_v4.replace(".0/16", ".1")
    }

    pub fn gateway_v6(&self) -> Res<String> {
        self.network
            .subnet_v6
            .map(|subnet| subnet.replace("::/64", "::1"))
            .ok_or_else(|| {
                format!(
                    "the server on {} has no IPv6 pod subnet",
                    self.network.bridge
                )
            })
    }

    /// Starts the suite's server: see `start_with`. `BERTH_E2E_RUNTIME=gvisor` makes gVisor
    /// its default runtime, so every pod case that names none runs under it.
    pub fn start(dir: &Path, registry: &str) -> Res<Server> {
        match std::env::var("BERTH_E2E_RUNTIME") {
            Ok(runtime) if !runtime.is_empty() => Server::start_with_args(
                dir,
                registry,
                SUITE_NETWORK,
                &["--runtime".to_string(), runtime],
            ),
            _ => Server::start_with(dir, registry, SUITE_NETWORK),
        }
    }

    /// Starts `berth server` with everything under `dir` and its pods on `network`, and waits
    /// until `/healthz` answers and the client profile holds a token. `registry` (HOST:PORT) is
    /// spoken to over plain HTTP and mirrors Docker Hub.
    pub fn start_with(dir: &Path, registry: &str, network: PodNetwork) -> Res<Server> {
        Server::start_with_args(dir, registry, network, &[])
    }

    /// Like `start_with`, with `extra_args` added to the server's command line.
    pub fn start_with_args(
        dir: &Path,
        registry: &str,
        network: PodNetwork,
        extra_args: &[String],
    ) -> Res<Server> {
        // An --ingress-listen among the extra flags replaces the usual free port.
        let ingress = match extra_args.iter().position(|a| a == "--ingress-listen") {
            Some(at) => extra_args
                .get(at + 1)
                .and_then(|a| a.parse().ok())
                .ok_or("--ingress-listen needs an address")?,
            None => loopback(free_port()?),
        };
        let mut server = Server {
            bin: berth_bin()?,
            api: loopback(free_port()?),
            ingress,
            state_dir: state_dir_in(dir),
            profile: dir.join("profile.json"),
            log: dir.join("server.log"),
            token: String::new(),
            gateway: String::new(),
            network,
            registry: registry.to_string(),
            dir: dir.to_path_buf(),
            extra_args: [extra_args, &super::database::server_args()?].concat(),
            child: Mutex::new(None),
            successor: Mutex::new(None),
        };
        let child = server.spawn(false)?;
        *server.child.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        let (token, gateway) = server.wait_ready().map_err(|e| server.with_log(e))?;
        server.token = token;
        server.gateway = gateway;
        Ok(server)
    }

    /// Starts the process with this server's configuration; `append` keeps the log of an
    /// earlier run of it.
    fn spawn(&self, append: bool) -> Res<Child> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&self.log)
            .ctx("open server log")?;
        let err = out.try_clone().ctx("clone server log handle")?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("server")
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(["--api-listen", &self.api.to_string()])
            .args(["--domain", DOMAIN])
            .args(["--insecure-registry", &self.registry])
            .args(["--registry-mirror", &format!("docker.io={}", self.registry)])
            .args(["--stop-timeout", &STOP_TIMEOUT_SECONDS.to_string()])
            .args(["--pod-subnet-v4", self.network.subnet_v4])
            .args(["--pod-subnet-v6", self.network.subnet_v6.unwrap_or("none")])
            .args(["--bridge", self.network.bridge])
            .args([
                "--node-label",
                &format!("{NODE_LABEL}={}", self.network.bridge),
            ])
            .args(&self.extra_args)
            .args(
                (!self.extra_args.iter().any(|a| a == "--ingress-listen"))
                    .then(|| ["--ingress-listen".to_string(), self.ingress.to_string()])
                    .into_iter()
                    .flatten(),
            )
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        server_env(&mut cmd, &self.profile)
            .spawn()
            .with_ctx(|| format!("start {} server", self.bin.display()))
    }

    /// `error` with the end of the server log, for failure messages.
    pub fn with_log(&self, error: String) -> String {
        format!(
            "{error}\nlast lines of the server log {}:\n{}",
            self.log.display(),
            self.log_tail(40)
        )
    }

    /// Waits for `/healthz` and the client profile; returns (token, gateway) from the profile.
    fn wait_ready(&self) -> Res<(String, String)> {
        let http = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .ctx("build http client")?;
        let url = format!("http://{}/healthz", self.api);
        let healthy = poll(Duration::from_secs(60), Duration::from_millis(200), || {
            if let Some(status) = self.exit_status() {
                return Some(Err(format!(
                    "berth server exited during startup ({status})"
                )));
            }
            let resp = http.get(&url).send().ok()?;
            (resp.status() == reqwest::StatusCode::OK).then_some(Ok(()))
        });
        healthy.unwrap_or_else(|| Err(format!("GET {url} did not answer 200 within 60s")))?;

        let profile = poll(Duration::from_secs(10), Duration::from_millis(100), || {
            let text = std::fs::read_to_string(&self.profile).ok()?;
            let value: serde_json::Value = serde_json::from_str(&text).ok()?;
            let token = value.get("token")?.as_str()?.to_string();
            let gateway = value.get("gateway")?.as_str()?.to_string();
            Some((token, gateway))
        });
        let (token, gateway) = profile.ok_or_else(|| {
            format!(
                "the server is healthy but {} holds no {{\"gateway\", \"token\"}} profile",
                self.profile.display()
            )
        })?;
        if token.is_empty() {
            return Err(format!(
                "the profile {} has an empty token",
                self.profile.display()
            ));
        }
        Ok((token, gateway))
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        if let Some(pid) = *self.successor.lock().unwrap_or_else(|p| p.into_inner()) {
            return alive(pid).then_some(pid);
        }
        let guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map(Child::id)
    }

    /// Its memory and descriptors, not counting its connections to a PostgreSQL store.
    pub fn usage(&self) -> Res<ProcessUsage> {
        let pid = self.pid().ok_or("the server is not running")?;
        let mut usage = ProcessUsage::of(pid)?;
        let pooled = super::database::pool_connections(&self.extra_args)?;
        usage.fds = usage.fds.saturating_sub(pooled);
        Ok(usage)
    }

    /// Whether the server process is still running.
    pub fn is_running(&self) -> bool {
        if let Some(pid) = *self.successor.lock().unwrap_or_else(|p| p.into_inner()) {
            return alive(pid);
        }
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        guard
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Hot-restarts the server (SIGUSR2) and waits until a new process has written its pid
    /// file and answers `/healthz`. Returns (old pid, new pid); the old process may still be
    /// draining.
    pub fn hot_restart(&self) -> Res<(u32, u32)> {
        let old = self.pid().ok_or("hot restart: the server is not running")?;
        signal(old, libc::SIGUSR2)?;
        let pid_file = self.state_dir.join("server.pid");
        let http = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .ctx("build http client")?;
        let url = format!("http://{}/healthz", self.api);
        let new = poll(Duration::from_secs(60), Duration::from_millis(20), || {
            let pid: u32 = std::fs::read_to_string(&pid_file)
                .ok()?
                .trim()
                .parse()
                .ok()?;
            let serving = pid != old && alive(pid);
            (serving && http.get(&url).send().ok()?.status().is_success()).then_some(pid)
        })
        .ok_or_else(|| {
            self.with_log(format!(
                "no new server wrote {} and answered {url} within 60 s of SIGUSR2",
                pid_file.display()
            ))
        })?;
        *self.successor.lock().unwrap_or_else(|p| p.into_inner()) = Some(new);
        Ok((old, new))
    }

    /// Waits up to `limit` for the process a hot restart replaced to exit, and reaps it.
    pub fn wait_old_exited(&self, limit: Duration) -> Res<ExitStatus> {
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let child = guard.as_mut().ok_or("no old server process")?;
        let status = poll(limit, Duration::from_millis(50), || {
            child.try_wait().ok().flatten()
        })
        .ok_or_else(|| format!("the old server did not exit within {limit:?}"))?;
        *guard = None;
        Ok(status)
    }

    /// Kills the server with SIGKILL, as a crash or the OOM killer would: it gets no chance to
    /// clean up. Fails if it was not running.
    pub fn kill(&self) -> Res<()> {
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let mut child = guard.take().ok_or("the server is not running")?;
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the server had already exited ({status})"));
        }
        child.kill().ctx("SIGKILL the server")?;
        child.wait().ctx("reap the killed server")?;
        Ok(())
    }

    /// Starts the server again after it ended, on the same state directory, ports and network,
    /// and waits until it is ready with the same admin token.
    pub fn restart(&self) -> Res<()> {
        {
            let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(child) = guard.as_mut() {
                if matches!(child.try_wait(), Ok(None)) {
                    return Err("restart: the server is still running".into());
                }
            }
            *guard = Some(self.spawn(true)?);
        }
        let (token, _) = self.wait_ready().map_err(|e| self.with_log(e))?;
        if token != self.token {
            return Err(self.with_log(format!(
                "the restarted server has another admin token than before ({token:?}, was {:?})",
                self.token
            )));
        }
        Ok(())
    }

    fn exit_status(&self) -> Option<ExitStatus> {
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// The API base URL this harness uses, `http://127.0.0.1:PORT`.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail_file(&self.log, lines)
    }

    /// Stops the server with SIGTERM; fails if it needs SIGKILL or already died.
    pub fn stop(&self) -> Res<()> {
        let successor = self
            .successor
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(pid) = successor {
            let old = self.child.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(old) = old {
                // Still draining: it has no state left to lose.
                let _ = terminate(old, Duration::from_secs(10));
            }
            return stop_pid(pid, Duration::from_secs(30));
        }
        let mut guard = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut child) = guard.take() else {
            return Ok(());
        };
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the berth server died before teardown ({status})"));
        }
        let started = Instant::now();
        match terminate(child, Duration::from_secs(30)) {
            Some(status) if status.success() => Ok(()),
            Some(status) => {
                eprintln!("note: berth server exited with {status} after SIGTERM");
                Ok(())
            }
            None => Err(format!(
                "the berth server did not exit within {:?} of SIGTERM and was killed",
                started.elapsed()
            )),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Whether `pid` runs (a zombie does not: it has exited, unreaped).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn signal(pid: u32, sig: libc::c_int) -> Res<()> {
    let pid = libc::pid_t::try_from(pid).ctx("pid")?;
    // SAFETY: kill(2) has no memory-safety preconditions.
    if unsafe { libc::kill(pid, sig) } == -1 {
        return Err(format!(
            "kill({pid}, {sig}): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// SIGTERM to a server process that is not our child; SIGKILL after `grace`.
fn stop_pid(pid: u32, grace: Duration) -> Res<()> {
    if !alive(pid) {
        return Err(format!("the berth server {pid} died before teardown"));
    }
    signal(pid, libc::SIGTERM)?;
    if poll(grace, Duration::from_millis(100), || {
        (!alive(pid)).then_some(())
    })
    .is_some()
    {
        return Ok(());
    }
    let _ = signal(pid, libc::SIGKILL);
    Err(format!(
        "the berth server {pid} did not exit within {grace:?} of SIGTERM and was killed"
    ))
}

/// Sends SIGTERM, waits up to `grace`, then SIGKILLs. Returns the exit status if the process
/// exited on its own within the grace period.
pub fn terminate(mut child: Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) has no memory-safety preconditions; `pid` is our own unreaped child,
        // so it cannot have been recycled for another process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    let exited = poll(grace, Duration::from_millis(100), || {
        child.try_wait().ok().flatten()
    });
    if exited.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    exited
}
