//! Talking to berth the way users do: the HTTP API, the CLI and the ingress.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use berth_api::{Container, ContainerList, ContainerStatus};
use reqwest::blocking::{Client, RequestBuilder};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use tungstenite::client::IntoClientRequest;
use tungstenite::WebSocket;

use super::server::{Server, NO_PROXY};
use super::{indent, tail_lines, timeouts, Context, Res};

/// How often status polls ask the API.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

pub struct Api {
    pub base: String,
    pub token: String,
    pub ingress: SocketAddr,
    bin: PathBuf,
    profile: PathBuf,
    http: Client,
}

/// The SDK of this checkout, which the tests use rather than an installed one.
pub fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/python")
}

/// The container id `berth run` printed after `=> Container created successfully ===>`.
pub fn created_id(stdout: &str) -> Option<String> {
    stdout.lines().find_map(|l| {
        l.split_once("=> Container created successfully ===>")
            .map(|(_, id)| id.trim().to_string())
    })
}

/// The outcome of one CLI invocation.
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// For failure messages.
    pub fn show(&self) -> String {
        format!(
            "exit status: {}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            indent(&self.stdout),
            indent(&self.stderr)
        )
    }
}

fn http_client(timeout: Duration) -> reqwest::blocking::ClientBuilder {
    Client::builder()
        .no_proxy()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
}

impl Api {
    pub fn new(server: &Server) -> Res<Api> {
        Ok(Api {
            base: server.api_url(),
            token: server.token.clone(),
            ingress: server.ingress,
            bin: server.bin.clone(),
            profile: server.profile.clone(),
            http: http_client(Duration::from_secs(30))
                .build()
                .ctx("build API client")?,
        })
    }

    // ------------------------------------------------------------------------------------------
    // raw requests

    /// A request to `path` (like "/v1/containers") carrying the admin token.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// A request to `path` with the given token, or none.
    pub fn request_with_token(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
    ) -> RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Sends and returns (status, body).
    pub fn send(&self, req: RequestBuilder, what: &str) -> Res<(StatusCode, String)> {
        let resp = req.send().with_ctx(|| what.to_string())?;
        let status = resp.status();
        let body = resp.text().with_ctx(|| format!("{what}: read body"))?;
        Ok((status, body))
    }

    /// `POST /v1/containers` with a raw body; returns (status, body).
    pub fn create_raw(&self, body: &str, token: Option<&str>) -> Res<(StatusCode, String)> {
        let req = self
            .request_with_token(Method::POST, "/v1/containers", token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string());
        self.send(req, "POST /v1/containers")
    }

    // ------------------------------------------------------------------------------------------
    // containers

    /// `POST /v1/containers`, expecting the request to be accepted.
    pub fn create(&self, spec: &Value) -> Res<Container> {
        let (status, body) = self.create_raw(&spec.to_string(), Some(&self.token))?;
        if !status.is_success() {
            return Err(format!(
                "POST /v1/containers {spec} answered {status}: {body}"
            ));
        }
        if status != StatusCode::ACCEPTED {
            return Err(format!(
                "POST /v1/containers answered {status}, the API promises 202"
            ));
        }
        parse_json(&body, "the created container")
    }

    /// Creates a container and returns a guard that stops it when dropped.
    /// Creates a pod of its own. Identical specs share a stub and so a URL (the newest
    /// container answers), so each launch gets a unique marker in its env.
    pub fn launch(&self, mut spec: Value) -> Res<Pod<'_>> {
        static LAUNCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = LAUNCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !spec["env"].is_object() {
            spec["env"] = serde_json::json!({});
        }
        spec["env"]["E2E_LAUNCH"] = Value::String(format!("{}-{n}", std::process::id()));
        let container = self.create(&spec)?;
        check_id_shape(&container)?;
        Ok(Pod {
            api: self,
            id: container.id.clone(),
            created: container,
        })
    }

    /// A guard for a container created some other way (the CLI).
    pub fn adopt(&self, id: &str) -> Res<Pod<'_>> {
        let container = self.get(id)?;
        Ok(Pod {
            api: self,
            id: id.to_string(),
            created: container,
        })
    }

    pub fn get(&self, id: &str) -> Res<Container> {
        let (status, body) = self.send(
            self.request(Method::GET, &format!("/v1/containers/{id}")),
            "GET container",
        )?;
        if status != StatusCode::OK {
            return Err(format!("GET /v1/containers/{id} answered {status}: {body}"));
        }
        parse_json(&body, "a container")
    }

    pub fn list(&self, all: bool) -> Res<Vec<Container>> {
        let path = if all {
            "/v1/containers?all=true"
        } else {
            "/v1/containers"
        };
        let (status, body) = self.send(self.request(Method::GET, path), "list containers")?;
        if status != StatusCode::OK {
            return Err(format!("GET {path} answered {status}: {body}"));
        }
        Ok(parse_json::<ContainerList>(&body, "a container list")?.containers)
    }

    /// `POST /v1/containers/{id}/stop`; the stop completes asynchronously.
    pub fn stop(&self, id: &str) -> Res<Container> {
        let req = self
            .request(Method::POST, &format!("/v1/containers/{id}/stop"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body("{}");
        let (status, body) = self.send(req, "stop container")?;
        if status != StatusCode::OK {
            return Err(format!(
                "POST /v1/containers/{id}/stop answered {status}: {body}"
            ));
        }
        parse_json(&body, "a container")
    }

    /// `GET /v1/containers/{id}/logs`.
    pub fn logs(&self, id: &str) -> Res<String> {
        let path = format!("/v1/containers/{id}/logs");
        let (status, body) = self.send(self.request(Method::GET, &path), "get logs")?;
        if status != StatusCode::OK {
            return Err(format!("GET {path} answered {status}: {body}"));
        }
        Ok(body)
    }

    /// Polls the log of `id` until it contains `needle`, for up to 10 s; returns the log.
    pub fn wait_logged(&self, id: &str, needle: &str) -> Res<String> {
        let mut last = String::new();
        crate::common::poll(Duration::from_secs(10), Duration::from_millis(200), || {
            last = self.logs(id).unwrap_or_else(|e| e);
            last.contains(needle).then(|| last.clone())
        })
        .ok_or_else(|| {
            format!(
                "the log of {id} never showed {needle:?}:\n{}\n{}",
                indent(&last),
                self.describe(id)
            )
        })
    }

    /// The container and the end of its log, for failure messages.
    pub fn describe(&self, id: &str) -> String {
        let container = match self.get(id) {
            Ok(c) => serde_json::to_string_pretty(&c).unwrap_or_else(|e| e.to_string()),
            Err(e) => format!("(cannot get it: {e})"),
        };
        let logs = match self.logs(id) {
            Ok(l) if l.trim().is_empty() => "(empty)".to_string(),
            Ok(l) => tail_lines(&l, 20),
            Err(e) => format!("(cannot get them: {e})"),
        };
        format!(
            "container {id}:\n{}\nits last log lines:\n{}",
            indent(&container),
            indent(&logs)
        )
    }

    /// Polls the container until `done` holds. Fails with the status history on timeout, or
    /// as soon as the container reaches a terminal state `done` does not accept.
    pub fn wait_for(
        &self,
        id: &str,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Container) -> bool,
    ) -> Res<Container> {
        let start = Instant::now();
        let mut history: Vec<String> = Vec::new();
        loop {
            let c = self.get(id)?;
            let seen = format!("{}", c.status);
            if history.last() != Some(&seen) {
                history.push(seen);
            }
            if done(&c) {
                return Ok(c);
            }
            let elapsed = start.elapsed();
            if c.status.is_terminal() || elapsed >= timeout {
                let why = if c.status.is_terminal() {
                    format!("it reached the terminal state {}", c.status)
                } else {
                    format!("it was still {} after {elapsed:.1?}", c.status)
                };
                return Err(format!(
                    "waiting for {id} to be {what}: {why} (states seen: {})\n{}",
                    history.join(" -> "),
                    self.describe(id)
                ));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    pub fn wait_running(&self, id: &str) -> Res<Container> {
        self.wait_running_within(id, timeouts::START)
    }

    /// [`wait_running`](Self::wait_running) for a pod whose image is large to pull.
    pub fn wait_running_within(&self, id: &str, timeout: Duration) -> Res<Container> {
        self.wait_for(id, "RUNNING", timeout, |c| {
            c.status == ContainerStatus::Running
        })
    }

    /// Creates a pod from `spec` that must fail within `timeout`; returns why it failed.
    pub fn create_failing(&self, spec: &Value, timeout: Duration) -> Res<String> {
        let created = self.create(spec)?;
        let ended = self.wait_terminal(&created.id, timeout)?;
        if ended.status != ContainerStatus::Failed {
            return Err(format!(
                "a pod from {} is {}, expected FAILED: {:?}",
                ended.image, ended.status, ended.reason
            ));
        }
        Ok(ended.reason.unwrap_or_default())
    }

    pub fn wait_terminal(&self, id: &str, timeout: Duration) -> Res<Container> {
        self.wait_for(id, "in a terminal state", timeout, |c| {
            c.status.is_terminal()
        })
    }

    /// The directory of the berth binary under test.
    pub fn bin_dir(&self) -> PathBuf {
        self.bin.parent().map(PathBuf::from).unwrap_or_default()
    }

    // ------------------------------------------------------------------------------------------
    // image builds

    /// `POST /v1/images/build` with `spec`, kept open as a stream of build events.
    pub fn build_stream(&self, spec: &Value) -> Res<BufReader<reqwest::blocking::Response>> {
        let client = http_client(timeouts::BUILD).build().ctx("build client")?;
        let resp = client
            .post(format!("{}/v1/images/build", self.base))
            .bearer_auth(&self.token)
            .json(spec)
            .send()
            .ctx("POST /v1/images/build")?;
        let status = resp.status();
        if status != StatusCode::OK {
            let body = resp.text().unwrap_or_default();
            return Err(format!(
                "POST /v1/images/build {spec} answered {status}: {body}"
            ));
        }
        Ok(BufReader::new(resp))
    }

    /// Builds `spec` to the end: (the log lines, then the image name or the build's error).
    pub fn build(&self, spec: &Value) -> Res<(Vec<String>, Result<String, String>)> {
        let stream = self.build_stream(spec)?;
        let mut log = Vec::new();
        for line in stream.lines() {
            let line = line.ctx("reading the build stream")?;
            let event: Value = parse_json(&line, "a build event")?;
            if let Some(text) = event.get("log").and_then(Value::as_str) {
                log.push(text.to_string());
            } else if let Some(done) = event.get("done") {
                let image = done["image"].as_str().unwrap_or_default().to_string();
                return Ok((log, Ok(image)));
            } else if let Some(error) = event.get("error").and_then(Value::as_str) {
                return Ok((log, Err(error.to_string())));
            } else {
                return Err(format!("unknown build event {line}"));
            }
        }
        Err(format!(
            "the build stream ended without a result; log:\n{}",
            indent(&log.join("\n"))
        ))
    }

    // ------------------------------------------------------------------------------------------
    // CLI

    fn cli_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args);
        self.client_env(&mut cmd);
        cmd
    }

    /// What every client process of this server gets: its gateway, token and profile, no
    /// proxy for loopback, the berth binary on PATH and this checkout's Python SDK.
    fn client_env(&self, cmd: &mut Command) {
        let path = format!(
            "{}:{}",
            self.bin_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        cmd.env("BERTH_GATEWAY", &self.base)
            .env("BERTH_TOKEN", &self.token)
            .env("BERTH_PROFILE", &self.profile)
            .env("NO_PROXY", NO_PROXY)
            .env("no_proxy", NO_PROXY)
            .env_remove("RUST_LOG")
            .env("PATH", path)
            .env("PYTHONPATH", sdk_dir())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    }

    /// Runs `berth ARGS...` in `dir` (for `berth deploy app.py:pod`).
    pub fn cli_in(&self, dir: &Path, args: &[&str]) -> Res<CliOutput> {
        let mut cmd = self.cli_command(args);
        cmd.current_dir(dir);
        run_with_timeout(cmd, args, timeouts::CLI)
    }

    /// Runs `sh -c COMMAND` in `dir` with this server's client environment.
    pub fn sh_in(&self, dir: &Path, command: &str) -> Res<CliOutput> {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", command]).current_dir(dir);
        self.client_env(&mut cmd);
        run_with_timeout(cmd, &["(sh)", command], timeouts::CLI)
    }

    /// Runs `berth ARGS...` in `dir` with `BERTH_TOKEN` set to `token`.
    pub fn cli_with_token_in(&self, dir: &Path, args: &[&str], token: &str) -> Res<CliOutput> {
        let mut cmd = self.cli_command(args);
        cmd.current_dir(dir).env("BERTH_TOKEN", token);
        run_with_timeout(cmd, args, timeouts::CLI)
    }

    /// Runs `python3 ARGS...` in `dir` as a user of the SDK would, against this server.
    pub fn python(&self, dir: &Path, args: &[&str]) -> Res<CliOutput> {
        let mut cmd = Command::new("python3");
        cmd.args(args).current_dir(dir);
        self.client_env(&mut cmd);
        let mut shown = vec!["(python3)"];
        shown.extend(args);
        run_with_timeout(cmd, &shown, timeouts::CLI)
    }

    /// Runs `berth ARGS...` against this server and waits for it (at most `timeouts::CLI`).
    pub fn cli(&self, args: &[&str]) -> Res<CliOutput> {
        run_with_timeout(self.cli_command(args), args, timeouts::CLI)
    }

    /// Runs `berth ARGS...` with only `BERTH_PROFILE` pointing at the server's profile: no
    /// gateway or token in the environment.
    pub fn cli_profile_only(&self, args: &[&str]) -> Res<CliOutput> {
        let mut cmd = self.cli_command(args);
        cmd.env_remove("BERTH_GATEWAY").env_remove("BERTH_TOKEN");
        run_with_timeout(cmd, args, timeouts::CLI)
    }

    /// Runs `berth ARGS...` with `BERTH_TOKEN` set to `token`.
    pub fn cli_with_token(&self, args: &[&str], token: &str) -> Res<CliOutput> {
        let mut cmd = self.cli_command(args);
        cmd.env("BERTH_TOKEN", token);
        run_with_timeout(cmd, args, timeouts::CLI)
    }

    /// Starts `berth ARGS...` and hands back the running child (for `logs --follow`).
    pub fn cli_spawn(&self, args: &[&str]) -> Res<Child> {
        self.cli_command(args)
            .spawn()
            .with_ctx(|| format!("spawn berth {}", args.join(" ")))
    }

    // ------------------------------------------------------------------------------------------
    // ingress

    /// A client that resolves the host of `url` to the ingress, as DNS for `*.berth.test` would.
    fn ingress_client(&self, url: &Url) -> Res<Client> {
        let host = url
            .host_str()
            .ok_or_else(|| format!("URL {url} has no host"))?;
        http_client(Duration::from_secs(15))
            .resolve(host, self.ingress)
            .build()
            .ctx("build ingress client")
    }

    /// `GET url` through the ingress; returns (status, body).
    pub fn ingress_get(&self, url: &str) -> Res<(StatusCode, String)> {
        let parsed = Url::parse(url).with_ctx(|| format!("parse URL {url:?}"))?;
        let client = self.ingress_client(&parsed)?;
        let resp = client
            .get(parsed)
            .send()
            .with_ctx(|| format!("GET {url}"))?;
        let status = resp.status();
        let body = resp.text().with_ctx(|| format!("GET {url}: read body"))?;
        Ok((status, body))
    }

    /// Polls `GET url` through the ingress until it answers 200 (the app may need a moment to
    /// listen after RUNNING). Returns the body.
    pub fn wait_http_ok(&self, url: &str, timeout: Duration) -> Res<String> {
        let start = Instant::now();
        loop {
            let last = match self.ingress_get(url) {
                Ok((StatusCode::OK, body)) => return Ok(body),
                Ok((status, body)) => format!("{status}: {}", body.trim()),
                Err(e) => e,
            };
            if start.elapsed() >= timeout {
                return Err(format!(
                    "GET {url} did not answer 200 within {timeout:?}; last: {last}"
                ));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Opens a websocket to `url` (an `http://` pod URL plus path) through the ingress.
    pub fn ws_connect(&self, url: &str) -> Res<WebSocket<TcpStream>> {
        let ws_url = url.replacen("http://", "ws://", 1);
        let request = ws_url
            .as_str()
            .into_client_request()
            .with_ctx(|| format!("websocket request {ws_url}"))?;
        let stream = TcpStream::connect(self.ingress).ctx("connect to the ingress")?;
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .ctx("set read timeout")?;
        let (ws, response) = tungstenite::client(request, stream)
            .map_err(|e| format!("websocket handshake with {ws_url} through the ingress: {e}"))?;
        if response.status().as_u16() != 101 {
            return Err(format!(
                "websocket handshake answered {}",
                response.status()
            ));
        }
        Ok(ws)
    }

    /// Like `ws_connect`, retrying until the pod accepts or `timeout` passes.
    pub fn wait_ws_connect(&self, url: &str, timeout: Duration) -> Res<WebSocket<TcpStream>> {
        let start = Instant::now();
        loop {
            match self.ws_connect(url) {
                Ok(ws) => return Ok(ws),
                Err(e) if start.elapsed() >= timeout => {
                    return Err(format!("no websocket within {timeout:?}; last error: {e}"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(300)),
            }
        }
    }
}

/// A container this test created; dropping it stops the container and waits for it to end, so
/// every test cleans up after itself even when it fails.
pub struct Pod<'a> {
    api: &'a Api,
    pub id: String,
    /// The container as the create call returned it.
    pub created: Container,
}

impl Pod<'_> {
    /// The pod URL for `port`, checked against the documented shape
    /// `http://<stub>-<port>.berth.test:<ingress port>`.
    pub fn url(&self, port: u16) -> Res<String> {
        let c = self.api.get(&self.id)?;
        let index = c
            .ports
            .iter()
            .position(|p| *p == port)
            .ok_or_else(|| format!("{} exposes ports {:?}, not {port}", self.id, c.ports))?;
        let url = c
            .urls
            .get(index)
            .ok_or_else(|| format!("{} has ports {:?} but urls {:?}", self.id, c.ports, c.urls))?
            .clone();
        let expected = format!(
            "http://{}-{port}.{}:{}",
            c.stub_id,
            super::server::DOMAIN,
            self.api.ingress.port()
        );
        if url.trim_end_matches('/') != expected {
            return Err(format!(
                "{} has URL {url:?}, expected {expected:?}",
                self.id
            ));
        }
        Ok(expected)
    }

    pub fn get(&self) -> Res<Container> {
        self.api.get(&self.id)
    }

    /// Polls `GET <url for port><path>` through the ingress until it answers 200; the error
    /// describes the container.
    pub fn wait_http_ok(&self, port: u16, path: &str) -> Res<String> {
        let url = format!("{}{path}", self.url(port)?);
        self.api
            .wait_http_ok(&url, timeouts::HTTP_READY)
            .map_err(|e| format!("{e}\n{}", self.describe()))
    }

    pub fn describe(&self) -> String {
        self.api.describe(&self.id)
    }
}

impl Drop for Pod<'_> {
    fn drop(&mut self) {
        let Ok(c) = self.api.get(&self.id) else {
            return;
        };
        if c.status.is_terminal() {
            return;
        }
        if let Err(e) = self.api.stop(&self.id) {
            eprintln!("cleanup: stopping {} failed: {e}", self.id);
            return;
        }
        if let Err(e) = self.api.wait_terminal(&self.id, timeouts::STOP) {
            eprintln!("cleanup: {e}");
        }
    }
}

pub fn parse_json<T: serde::de::DeserializeOwned>(body: &str, what: &str) -> Res<T> {
    serde_json::from_str(body).map_err(|e| format!("the body is not {what} ({e}): {body}"))
}

fn check_id_shape(c: &Container) -> Res<()> {
    let prefix = format!("pod-{}-", c.stub_id);
    let ok = c.id.strip_prefix(&prefix).is_some_and(|tail| {
        tail.len() == 8
            && tail
                .chars()
                .all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase())
    });
    if !ok {
        return Err(format!(
            "container id {:?} is not pod-<stub_id>-<8 hex> (stub_id {:?})",
            c.id, c.stub_id
        ));
    }
    Ok(())
}

fn run_with_timeout(mut cmd: Command, args: &[&str], timeout: Duration) -> Res<CliOutput> {
    let shown = format!("berth {}", args.join(" "));
    let mut child = cmd.spawn().with_ctx(|| format!("spawn {shown}"))?;
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());
    let start = Instant::now();
    let status = loop {
        match child.try_wait().with_ctx(|| format!("wait for {shown}"))? {
            Some(status) => break status,
            None if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                let out = stdout.recv().unwrap_or_default();
                let err = stderr.recv().unwrap_or_default();
                return Err(format!(
                    "{shown} did not finish within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                    indent(&out),
                    indent(&err)
                ));
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    Ok(CliOutput {
        status,
        stdout: stdout.recv().unwrap_or_default(),
        stderr: stderr.recv().unwrap_or_default(),
    })
}

/// Reads a pipe to the end on a thread; the text arrives on the channel.
fn collect<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut p) = pipe {
            let mut buf = Vec::new();
            let _ = p.read_to_end(&mut buf);
            text = String::from_utf8_lossy(&buf).into_owned();
        }
        let _ = tx.send(text);
    });
    rx
}

/// Streams a pipe line by line onto a channel.
pub fn lines_of<R: Read + Send + 'static>(pipe: R) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            match line {
                Ok(l) => {
                    if tx.send(l).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    rx
}

/// A raw HTTP/1.1 keep-alive connection through the ingress, for tests that must control
/// exactly when the connection opens and closes.
pub struct RawHttp {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    host: String,
}

impl RawHttp {
    pub fn connect(ingress: SocketAddr, url: &str) -> Res<RawHttp> {
        let parsed = Url::parse(url).with_ctx(|| format!("parse URL {url:?}"))?;
        let host = match (parsed.host_str(), parsed.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => return Err(format!("URL {url} has no host")),
        };
        let stream = TcpStream::connect(ingress).ctx("connect to the ingress")?;
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .ctx("set read timeout")?;
        let reader = BufReader::new(stream.try_clone().ctx("clone socket")?);
        Ok(RawHttp {
            stream,
            reader,
            host,
        })
    }

    /// Sends `GET path` on this connection and reads the response; (status, body).
    pub fn get(&mut self, path: &str) -> Res<(u16, String)> {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: berth-e2e\r\nAccept: */*\r\n\r\n",
            self.host
        );
        self.stream
            .write_all(request.as_bytes())
            .ctx("send request")?;
        self.read_response()
    }

    fn read_response(&mut self) -> Res<(u16, String)> {
        let mut status_line = String::new();
        self.reader
            .read_line(&mut status_line)
            .ctx("read status line")?;
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("malformed status line {status_line:?}"))?;
        let mut content_length = None;
        let mut chunked = false;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).ctx("read header")? == 0 {
                return Err("connection closed inside the response head".into());
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.parse::<usize>().ok();
                } else if name.eq_ignore_ascii_case("transfer-encoding")
                    && value.to_ascii_lowercase().contains("chunked")
                {
                    chunked = true;
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                let mut size_line = String::new();
                self.reader
                    .read_line(&mut size_line)
                    .ctx("read chunk size")?;
                let size_hex = size_line.trim().split(';').next().unwrap_or("");
                let size = usize::from_str_radix(size_hex, 16)
                    .map_err(|_| format!("bad chunk size line {size_line:?}"))?;
                let mut chunk = vec![0u8; size + 2];
                self.reader.read_exact(&mut chunk).ctx("read chunk")?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(len) = content_length {
            body.resize(len, 0);
            self.reader.read_exact(&mut body).ctx("read body")?;
        } else {
            return Err("a keep-alive response needs a length or chunked encoding".into());
        }
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}
