//! A Jupyter notebook pod opened in real headless Chromium over the HTTPS ingress: the page
//! loads with the certificate trusted through berth's CA (in an NSS database, as `berth ca`
//! says), a cell runs through the kernel's websocket, its output is read back from the page,
//! and a screenshot is kept as a test artifact. Chromium is driven over WebDriver
//! (chromedriver) with plain HTTP calls.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::guide::notebook_image;
use super::tls::{ca_from_cli, with_tls_server, Curl};
use crate::common::harness::Env;
use crate::common::netns::{Forward, Netns};
use crate::common::server::{PodNetwork, DOMAIN};
use crate::common::{command_output, free_port, poll, timeouts, Context, Res};
use crate::ensure;

const NETWORK: PodNetwork = PodNetwork {
    bridge: "berthtest5",
    subnet_v4: "10.218.0.0/16",
    subnet_v6: None,
};

/// Where the screenshot goes: `$BERTH_E2E_ARTIFACTS`, else `target/e2e-artifacts`.
fn artifacts_dir() -> std::path::PathBuf {
    std::env::var_os("BERTH_E2E_ARTIFACTS")
        .map(Into::into)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/e2e-artifacts"))
}

pub fn notebook_in_chromium(env: &Env) -> Res<()> {
    notebook_image(env)?;
    with_tls_server(env, NETWORK, &[], |server, api, tls| {
        let ca = ca_from_cli(api)?;
        let pod = api.launch(json!({
            "image": "jupyter/base-notebook:latest",
            "ports": [8888],
            // This pod network is IPv4 only, and Jupyter binds :: as IPv6-only.
            "env": {"NOTEBOOK_ARGS": "--ip=0.0.0.0 --NotebookApp.token='' --NotebookApp.notebook_dir=/tmp"},
        }))?;
        // A 470 MB image, pulled while the rest of the suite runs beside it.
        let c = api.wait_running_within(&pod.id, 3 * timeouts::START)?;
        let url = c.urls.first().cloned().ok_or("no URL")?;
        // The same page with curl: the chain verified against berth's CA, over HTTP/2.
        let curl = Curl {
            ca: ca.clone(),
            tls,
            plain: server.ingress,
        };
        let page = poll(Duration::from_secs(120), Duration::from_millis(500), || {
            curl.run(
                &format!("{url}/tree"),
                &["--http2", "-w", "\nversion=%{http_version}"],
            )
            .ok()
            .filter(|p| p.contains("version=2") && p.contains("Jupyter"))
        })
        .ok_or_else(|| {
            format!(
                "{url}/tree did not load over HTTP/2 with curl\n{}",
                api.describe(&pod.id)
            )
        })?;
        ensure!(page.contains("<html"), "not a page: {page}");

        let home = tempfile::tempdir().ctx("chromium home")?;
        trust_in_nss(home.path(), &ca)?;
        let dir = artifacts_dir();
        let _ = std::fs::create_dir_all(&dir);
        // Chromium writes no net log to a path with `..` in it.
        let dir = dir.canonicalize().unwrap_or(dir);
        let netlog = dir.join("notebook-in-chromium.netlog.json");
        // Chromium aborts requests in flight whenever a network link comes or goes, and the
        // tests beside this one make and delete links all the time: it runs in a namespace
        // of its own, reaching the ingress through a forward at the same address.
        let netns = Netns::create("chromium")?;
        let _to_ingress = netns.forward_out(tls)?;
        let driver = ChromeDriver::start(&netns, home.path(), &netlog)?;
        let result = run_a_cell(&driver, &url);
        let shot = driver.screenshot();
        // Quitting the browser completes its network log.
        drop(driver);
        if let Ok(png) = shot {
            let path = dir.join("notebook-in-chromium.png");
            if std::fs::write(&path, png).is_ok() {
                eprintln!("browser: screenshot at {}", path.display());
            }
        }
        let output = result.map_err(|e| {
            format!(
                "{e}\nChromium's network errors (its log is at {}): {}",
                netlog.display(),
                net_errors(&netlog, DOMAIN)
            )
        })?;
        eprintln!("browser: the cell printed {output:?} in {DOMAIN} over {url}");
        Ok(())
    })
}

/// The network errors in Chromium's net log: each distinct error, with the event it ended
/// and the URL (or HTTP/2 session host) under `domain` it belonged to: what a "Failed to
/// fetch" in the page was underneath.
fn net_errors(netlog: &Path, domain: &str) -> String {
    let Ok(text) = std::fs::read_to_string(netlog) else {
        return "no net log".into();
    };
    // One JSON object a line: the constants first (naming event types and error codes),
    // then the events.
    let mut lines = text.lines();
    let constants: Value = lines
        .next()
        .and_then(|l| serde_json::from_str(&format!("{}}}", l.trim_end_matches(','))).ok())
        .unwrap_or_default();
    let name_of = |table: &str, code: &Value| -> String {
        constants["constants"][table]
            .as_object()
            .and_then(|t| t.iter().find(|(_, v)| *v == code))
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| code.to_string())
    };
    let mut urls = std::collections::HashMap::new();
    let mut seen = std::collections::BTreeMap::new();
    for event in lines.filter_map(|l| serde_json::from_str::<Value>(l.trim_end_matches(',')).ok()) {
        let source = event["source"]["id"].clone().to_string();
        let params = &event["params"];
        if let Some(url) = params["url"].as_str().or(params["host"].as_str()) {
            urls.insert(source.clone(), url.to_string());
        }
        let code = &event["params"]["net_error"];
        if code.is_null() {
            continue;
        }
        let what = format!(
            "{} in {} of {}",
            name_of("netError", code),
            name_of("logEventTypes", &event["type"]),
            name_of("logSourceType", &event["source"]["type"]),
        );
        let Some(url) = urls.get(&source).filter(|u| u.contains(domain)).cloned() else {
            continue;
        };
        *seen.entry((what, url)).or_insert(0) += 1;
    }
    if seen.is_empty() {
        return "none".into();
    }
    seen.into_iter()
        .map(|((what, url), n)| format!("\n  {what} ×{n} {url}"))
        .collect()
}

/// The NSS database Chromium reads under `$HOME`, holding berth's CA as a trusted root.
fn trust_in_nss(home: &Path, ca: &Path) -> Res<()> {
    let db = home.join(".pki/nssdb");
    std::fs::create_dir_all(&db).ctx("create nssdb")?;
    let db_arg = format!("sql:{}", db.display());
    command_output("certutil", &["-d", &db_arg, "-N", "--empty-password"])?;
    command_output(
        "certutil",
        &[
            "-d",
            &db_arg,
            "-A",
            "-t",
            "C,,",
            "-n",
            "berth",
            "-i",
            &ca.display().to_string(),
        ],
    )?;
    Ok(())
}

/// Opens the notebook UI, makes a notebook with one cell, runs it with Shift+Enter, and
/// returns the text of its output area.
fn run_a_cell(driver: &ChromeDriver, url: &str) -> Res<String> {
    driver.navigate(&format!("{url}/tree"))?;
    driver.wait_for(
        "the notebook tree",
        Duration::from_secs(60),
        "return document.readyState === 'complete' && !!document.cookie.match(/_xsrf=/)",
    )?;
    // A notebook with one cell, created through the server's API from the page itself
    // (same origin, its XSRF cookie).
    let made = driver.execute_async(
        r#"const done = arguments[0];
        const xsrf = document.cookie.match(/_xsrf=([^;]+)/)[1];
        const nb = {type: 'notebook', content: {cells: [{cell_type: 'code', source: 'print(6 * 7, "from the kernel")', metadata: {}, outputs: [], execution_count: null}], metadata: {kernelspec: {name: 'python3', display_name: 'Python 3 (ipykernel)', language: 'python'}}, nbformat: 4, nbformat_minor: 5}};
        fetch('/api/contents/berth-browser-test.ipynb', {method: 'PUT', headers: {'X-XSRFToken': xsrf, 'Content-Type': 'application/json'}, body: JSON.stringify(nb)})
          .then(r => done(r.status)).catch(e => done(String(e)));"#,
    )?;
    ensure!(
        made == json!(201) || made == json!(200),
        "saving the notebook answered {made}"
    );
    driver.navigate(&format!("{url}/notebooks/berth-browser-test.ipynb"))?;
    driver.wait_for(
        "the kernel to be idle",
        Duration::from_secs(90),
        "const s = document.querySelector('.jp-Notebook-ExecutionIndicator, .jp-KernelStatus, #jp-KernelStatus'); return !!document.querySelector('.jp-CodeCell .cm-content') && (!s || !/busy|connecting|starting/i.test(s.getAttribute('data-status') || s.textContent || ''))",
    )?;
    // Give the kernel's websocket a moment to finish connecting.
    std::thread::sleep(Duration::from_secs(3));
    let started = Instant::now();
    let output = poll(Duration::from_secs(90), Duration::from_secs(1), || {
        let text = driver
            .execute("const o = document.querySelector('.jp-CodeCell .jp-OutputArea-output'); return o ? o.textContent : null")
            .ok()?;
        if let Some(text) = text.as_str().filter(|t| t.contains("42 from the kernel")) {
            return Some(text.to_string());
        }
        // Not run yet (or the kernel was not ready): focus the cell and press Shift+Enter.
        if started.elapsed() < Duration::from_secs(80) {
            let _ = driver.run_cell();
        }
        None
    });
    output.ok_or_else(|| {
        let page = driver
            .execute("return document.body.innerText.slice(0, 2000)")
            .map(|v| v.to_string())
            .unwrap_or_default();
        format!("the cell's output never showed \"42 from the kernel\"; the page reads:\n{page}")
    })
}

struct ChromeDriver {
    process: Child,
    _forward: Forward,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
}

impl ChromeDriver {
    /// Starts chromedriver and a headless Chromium in `netns`, Chromium's network log going
    /// to `netlog`; WebDriver is reached through a forward from the host.
    fn start(netns: &Netns, home: &Path, netlog: &Path) -> Res<ChromeDriver> {
        let port = free_port()?;
        let process = netns
            .command("chromedriver")
            .arg(format!("--port={port}"))
            .env("HOME", home)
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ctx("start chromedriver (apt install chromium-driver)")?;
        let http = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(120))
            .build()
            .ctx("http client")?;
        let host_side = free_port()?;
        let forward = netns.forward_in(
            SocketAddr::from(([127, 0, 0, 1], host_side)),
            SocketAddr::from(([127, 0, 0, 1], port)),
        )?;
        let base = format!("http://127.0.0.1:{host_side}");
        let mut driver = ChromeDriver {
            process,
            _forward: forward,
            base,
            session: String::new(),
            http,
        };
        poll(Duration::from_secs(20), Duration::from_millis(100), || {
            driver
                .http
                .get(format!("{}/status", driver.base))
                .send()
                .ok()
                .map(|_| ())
        })
        .ok_or("chromedriver did not come up")?;
        let profile = home.join("profile");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-proxy-server", "--window-size=1280,900",
                    format!("--host-resolver-rules=MAP *.{DOMAIN} 127.0.0.1, MAP {DOMAIN} 127.0.0.1"),
                    format!("--user-data-dir={}", profile.display()),
                    format!("--log-net-log={}", netlog.display()),
                ],
            },
        }}});
        let value = driver.call(reqwest::Method::POST, "/session", Some(caps))?;
        driver.session = value["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session id in {value}"))?
            .to_string();
        Ok(driver)
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Res<Value> {
        let path = if path.starts_with("/session") && !self.session.is_empty() && path != "/session"
        {
            format!("/session/{}{}", self.session, &path["/session".len()..])
        } else {
            path.to_string()
        };
        let req = self.http.request(method, format!("{}{path}", self.base));
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        let resp = req.send().with_ctx(|| format!("WebDriver {path}"))?;
        let status = resp.status();
        let value: Value = resp
            .json()
            .with_ctx(|| format!("WebDriver {path} answer"))?;
        ensure!(status.is_success(), "WebDriver {path}: {status} {value}");
        Ok(value["value"].clone())
    }

    fn navigate(&self, url: &str) -> Res<()> {
        self.call(
            reqwest::Method::POST,
            "/session/url",
            Some(json!({"url": url})),
        )?;
        Ok(())
    }

    fn execute(&self, script: &str) -> Res<Value> {
        self.call(
            reqwest::Method::POST,
            "/session/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    fn execute_async(&self, script: &str) -> Res<Value> {
        self.call(
            reqwest::Method::POST,
            "/session/execute/async",
            Some(json!({"script": script, "args": []})),
        )
    }

    fn wait_for(&self, what: &str, timeout: Duration, condition: &str) -> Res<()> {
        poll(timeout, Duration::from_millis(500), || {
            (self.execute(condition).ok()? == json!(true)).then_some(())
        })
        .ok_or_else(|| format!("Chromium: waited {timeout:?} for {what}"))
    }

    /// Clicks into the first code cell and presses Shift+Enter.
    fn run_cell(&self) -> Res<()> {
        let found = self.call(
            reqwest::Method::POST,
            "/session/element",
            Some(json!({"using": "css selector", "value": ".jp-CodeCell .cm-content"})),
        )?;
        let id = found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .ok_or_else(|| format!("no element id in {found}"))?
            .to_string();
        self.call(
            reqwest::Method::POST,
            &format!("/session/element/{id}/click"),
            Some(json!({})),
        )?;
        self.call(
            reqwest::Method::POST,
            "/session/actions",
            Some(
                json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                    {"type": "keyDown", "value": "\u{E008}"},
                    {"type": "keyDown", "value": "\u{E007}"},
                    {"type": "keyUp", "value": "\u{E007}"},
                    {"type": "keyUp", "value": "\u{E008}"},
                ]}]}),
            ),
        )?;
        Ok(())
    }

    fn screenshot(&self) -> Res<Vec<u8>> {
        let value = self.call(reqwest::Method::GET, "/session/screenshot", None)?;
        let b64 = value.as_str().ok_or("no screenshot data")?;
        base64_decode(b64)
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self
                .http
                .delete(format!("{}/session/{}", self.base, self.session))
                .send();
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn base64_decode(text: &str) -> Res<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for b in text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
    {
        let v = ALPHABET
            .iter()
            .position(|a| *a == b)
            .ok_or("bad base64 in the screenshot")? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}
