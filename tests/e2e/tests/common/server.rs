//! The real `berth server` process under test.

use std::fs::File;
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
    child: Mutex<Option<Child>>,
}

/// The environment a test server runs in: its own profile, no client settings of the
/// machine, and no proxy for loopback.
pub fn server_env<'a>(cmd: &'a mut Command, profile: &Path) -> &'a mut Command {
    cmd.env("BERTH_PROFILE", profile)
        .env("RUST_LOG", "info")
        .env("NO_PROXY", NO_PROXY)
        .env("no_proxy", NO_PROXY)
        .env_remove("BERTH_GATEWAY")
        .env_remove("BERTH_TOKEN")
}

impl Server {
    /// The host's address on the pod bridge (host-local gives the subnet's first address to
    /// the gateway).
    pub fn gateway_v4(&self) -> String {
        POD_SUBNET_V4.replace(".0/16", ".1")
    }

    pub fn gateway_v6(&self) -> String {
        POD_SUBNET_V6.replace("::/64", "::1")
    }

    /// Starts `berth server` with everything under `dir` and waits until `/healthz` answers and
    /// the client profile holds a token. `registry` (HOST:PORT) is spoken to over plain HTTP and
    /// mirrors Docker Hub.
    pub fn start(dir: &Path, registry: &str) -> Res<Server> {
        let bin = berth_bin()?;
        let api = loopback(free_port()?);
        let ingress = loopback(free_port()?);
        let state_dir = dir.join("state");
        let profile = dir.join("profile.json");
        let log = dir.join("server.log");
        let out = File::create(&log).ctx("create server log")?;
        let err = out.try_clone().ctx("clone server log handle")?;
        let mut cmd = Command::new(&bin);
        cmd.arg("server")
            .arg("--state-dir")
            .arg(&state_dir)
            .args(["--api-listen", &api.to_string()])
            .args(["--ingress-listen", &ingress.to_string()])
            .args(["--domain", DOMAIN])
            .args(["--insecure-registry", registry])
            .args(["--registry-mirror", &format!("docker.io={registry}")])
            .args(["--stop-timeout", &STOP_TIMEOUT_SECONDS.to_string()])
            .args(["--pod-subnet-v4", POD_SUBNET_V4])
            .args(["--pod-subnet-v6", POD_SUBNET_V6])
            .args(["--bridge", BRIDGE])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = server_env(&mut cmd, &profile)
            .spawn()
            .with_ctx(|| format!("start {} server", bin.display()))?;
        let mut server = Server {
            bin,
            api,
            ingress,
            state_dir,
            profile,
            log,
            token: String::new(),
            gateway: String::new(),
            child: Mutex::new(Some(child)),
        };
        server.wait_ready().map_err(|e| {
            format!(
                "{e}\nlast lines of the server log {}:\n{}",
                server.log.display(),
                server.log_tail(40)
            )
        })?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> Res<()> {
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
        self.token = token;
        self.gateway = gateway;
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
