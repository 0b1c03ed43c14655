//! The HTTPS ingress as a user meets it: a server started with `--tls` serves pod URLs as
//! `https://` with certificates from its own CA (curl verifies them against `berth ca`, no
//! `-k`), over HTTP/2, redirects plain HTTP, streams events and large uploads, and keeps
//! authorized pods behind tokens.
//!
//! Each case runs a server of its own (own state, ports, bridge and pod subnet).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{testapp_spec, with};
use crate::common::client::Api;
use crate::common::harness::{link_exists, own_server_dir, stop_leftovers, Env};
use crate::common::server::{PodNetwork, Server, DOMAIN};
use crate::common::{command_output, free_port, poll, random_hex, Context, Res};
use crate::ensure;

/// Apart from the suite's network and from the other test servers'.
const NETWORK: PodNetwork = PodNetwork {
    bridge: "berthtest3",
    subnet_v4: "10.216.0.0/16",
    subnet_v6: None,
};

/// A server with HTTPS on, for the length of `body`; stopped and checked for leftovers after.
pub(crate) fn with_tls_server(
    env: &Env,
    network: PodNetwork,
    extra: &[&str],
    body: impl FnOnce(&Server, &Api, SocketAddr) -> Res<()>,
) -> Res<()> {
    let dir = own_server_dir(env, &network, "tls")?;
    let tls = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut args = vec!["--ingress-tls-listen".to_string(), tls.to_string()];
    args.extend(extra.iter().map(|a| a.to_string()));
    let server = Server::start_with_args(&dir, &env.registry.host(), network, &args)?;
    let api = Api::new(&server)?;
    let outcome = body(&server, &api, tls);
    let stopped = stop_leftovers(&api);
    let exited = server.stop();
    let bridge_gone = poll(Duration::from_secs(5), Duration::from_millis(100), || {
        (!link_exists(network.bridge)).then_some(())
    });
    if bridge_gone.is_none() {
        let _ = command_output("ip", &["link", "del", network.bridge]);
    }
    outcome.map_err(|e| server.with_log(e))?;
    stopped.map_err(|e| server.with_log(e))?;
    exited?;
    Ok(())
}

/// `curl` against the ingress: pod hosts resolve to it, the CA is the one `berth ca` names.
pub(crate) struct Curl {
    pub ca: PathBuf,
    pub tls: SocketAddr,
    pub plain: SocketAddr,
}

impl Curl {
    fn command(&self, url: &str, args: &[&str]) -> Res<Command> {
        let host = url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split(['/', ':', '?']).next())
            .ok_or_else(|| format!("no host in {url}"))?
            .to_string();
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--noproxy", "*", "--max-time", "60", "--cacert"])
            .arg(&self.ca)
            .args([
                "--resolve",
                &format!("{host}:{}:127.0.0.1", self.tls.port()),
            ])
            .args([
                "--resolve",
                &format!("{host}:{}:127.0.0.1", self.plain.port()),
            ])
            .args(args)
            .arg(url)
            .stdin(Stdio::null());
        Ok(cmd)
    }

    /// The output of `curl ARGS URL`; curl failing (TLS or connection) is an error.
    pub fn run(&self, url: &str, args: &[&str]) -> Res<String> {
        let out = self
            .command(url, args)?
            .output()
            .with_ctx(|| format!("run curl {url}"))?;
        ensure!(
            out.status.success(),
            "curl {} {url} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `(status, body)` of a request, status from curl's `-w`.
    pub fn status(&self, url: &str, args: &[&str]) -> Res<(u16, String)> {
        let mut all = vec!["-w", "\n%{http_code}"];
        all.extend(args);
        let out = self.run(url, &all)?;
        let (body, code) = out.rsplit_once('\n').unwrap_or(("", out.as_str()));
        let code = code
            .trim()
            .parse()
            .map_err(|_| format!("curl status {code:?}"))?;
        Ok((code, body.to_string()))
    }
}

/// The CA path from `berth ca` (its first line), checked to be a PEM certificate.
pub(crate) fn ca_from_cli(api: &Api) -> Res<PathBuf> {
    let out = api.cli(&["ca"])?;
    ensure!(out.status.success(), "berth ca failed: {}", out.show());
    let path = PathBuf::from(out.stdout.lines().next().unwrap_or("").trim());
    let pem = std::fs::read_to_string(&path).with_ctx(|| format!("read {}", path.display()))?;
    ensure!(
        pem.starts_with("-----BEGIN CERTIFICATE-----"),
        "berth ca named {} which is not a PEM certificate",
        path.display()
    );
    ensure!(
        out.stdout.contains("certutil") && out.stdout.contains("update-ca-certificates"),
        "berth ca does not say how to trust the CA:\n{}",
        out.stdout
    );
    Ok(path)
}

pub fn https_pod_urls(env: &Env) -> Res<()> {
    with_tls_server(
        env,
        NETWORK,
        &["--max-request-body-mib", "150"],
        |server, api, tls| {
            let curl = Curl {
                ca: ca_from_cli(api)?,
                tls,
                plain: server.ingress,
            };
            let pod = api.launch(testapp_spec(env, &["http", "8080"]))?;
            let c = api.wait_running(&pod.id)?;
            let url = c.urls.first().cloned().ok_or("the pod has no URL")?;
            let expected = format!("https://{}-8080.{DOMAIN}:{}", c.stub_id, tls.port());
            ensure!(url == expected, "the pod URL is {url}, expected {expected}");

            // HTTP/2, the chain verified against berth's CA.
            let out = poll(Duration::from_secs(30), Duration::from_millis(200), || {
                curl.run(
                    &format!("{url}/h2"),
                    &["--http2", "-w", "\nversion=%{http_version}"],
                )
                .ok()
                .filter(|o| o.contains("hello from testapp"))
            })
            .ok_or_else(|| format!("{url} did not answer over HTTPS"))?;
            ensure!(out.contains("version=2"), "not served over HTTP/2: {out}");

            // The plain listener sends browsers to HTTPS, path and query kept.
            let plain = format!(
                "http://{}-8080.{DOMAIN}:{}/a?b=1",
                c.stub_id,
                server.ingress.port()
            );
            let redirect = curl.run(
                &plain,
                &["-o", "/dev/null", "-w", "%{http_code} %{redirect_url}"],
            )?;
            ensure!(
                redirect == format!("308 {url}/a?b=1"),
                "plain HTTP answered {redirect:?}, expected a 308 to {url}/a?b=1"
            );

            // The pod learns how the client came.
            let headers = curl.run(&format!("{url}/?headers"), &[])?;
            ensure!(
                headers.contains("x-forwarded-proto: https")
                    && headers.contains("x-forwarded-for: 127.0.0.1")
                    && headers.contains("forwarded: for=127.0.0.1;host="),
                "forwarding headers missing: {headers}"
            );

            // Path-style URL on the bare domain.
            let path_style = format!("https://{DOMAIN}:{}/pod/{}/8080/x", tls.port(), c.stub_id);
            let (status, body) = curl.status(&path_style, &[])?;
            ensure!(
                status == 200 && body.contains("hello from testapp"),
                "path-style URL answered {status}: {body}"
            );

            server_sent_events_arrive_one_by_one(&curl, &url)?;
            large_upload_streams(server, &curl, &url)?;

            // A head over the limit is refused with 431 over HTTP/1.1.
            let big = format!("X-Big: {}", "x".repeat(100 * 1024));
            let (status, _) = curl.status(&url, &["--http1.1", "-H", &big])?;
            ensure!(
                status == 431,
                "an oversized header got {status}, expected 431"
            );
            Ok(())
        },
    )
}

fn server_sent_events_arrive_one_by_one(curl: &Curl, url: &str) -> Res<()> {
    let mut child = curl
        .command(&format!("{url}/sse"), &["-N", "--http2"])?
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ctx("run curl -N")?;
    let stdout = child.stdout.take().ok_or("no curl stdout")?;
    let started = Instant::now();
    let mut arrivals = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.ctx("read curl")?;
        if line.starts_with("data: ") {
            arrivals.push((line, started.elapsed()));
        }
    }
    let _ = child.wait();
    ensure!(arrivals.len() == 3, "expected 3 events, got {arrivals:?}");
    // The pod sends them 500 ms apart: buffered, they would arrive together.
    let spread = arrivals[2].1.saturating_sub(arrivals[0].1);
    ensure!(
        spread >= Duration::from_millis(700),
        "events arrived together ({arrivals:?}): the ingress buffers event streams"
    );
    eprintln!(
        "tls: SSE events arrived at {:?}",
        arrivals.iter().map(|a| a.1).collect::<Vec<_>>()
    );
    Ok(())
}

/// 100 MB through TLS and HTTP/2 with the server's memory flat; 413 past the cap.
fn large_upload_streams(server: &Server, curl: &Curl, url: &str) -> Res<()> {
    let pid = server.pid().ok_or("the server is not running")?;
    let file = std::env::temp_dir().join(format!("berth-upload-{}", random_hex(4)));
    let size: u64 = 100 * 1024 * 1024;
    let f = std::fs::File::create(&file).ctx("create upload file")?;
    f.set_len(size).ctx("size upload file")?;
    drop(f);
    let rss_before = rss_kib(pid)?;
    let result = curl.run(url, &["--http2", "-T", &file.display().to_string()]);
    let _ = std::fs::remove_file(&file);
    let out = result?;
    ensure!(
        out.contains(&format!("body_bytes={size}")),
        "the pod did not get the 100 MB body: {out}"
    );
    let rss_after = rss_kib(pid)?;
    eprintln!("tls: 100 MB upload, server RSS {rss_before} KiB -> {rss_after} KiB");
    ensure!(
        rss_after < rss_before + 40 * 1024,
        "the server's memory grew from {rss_before} to {rss_after} KiB over a 100 MB upload: bodies are buffered"
    );
    // Past the server's 150 MiB cap, refused before the pod sees it.
    let (status, _) = curl.status(
        url,
        &[
            "-X",
            "POST",
            "-H",
            "Content-Length: 209715200",
            "--data-binary",
            "x",
            "--http1.1",
        ],
    )?;
    ensure!(status == 413, "a 200 MiB body got {status}, expected 413");
    Ok(())
}

fn rss_kib(pid: u32) -> Res<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ctx("read status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| format!("no VmRSS for {pid}"))
}

pub fn authorized_pods_need_a_token(env: &Env) -> Res<()> {
    const NET: PodNetwork = PodNetwork {
        bridge: "berthtest4",
        subnet_v4: "10.217.0.0/16",
        subnet_v6: None,
    };
    with_tls_server(env, NET, &[], |server, api, tls| {
        let curl = Curl {
            ca: ca_from_cli(api)?,
            tls,
            plain: server.ingress,
        };
        let spec = with(
            testapp_spec(env, &["http", "8080"]),
            "ports",
            json!([8080, 8081]),
        );
        let pod = api.launch(with(spec, "authorized", json!(true)))?;
        let c = api.wait_running(&pod.id)?;
        ensure!(c.authorized, "the container does not say it is authorized");
        let url = c.urls.first().cloned().ok_or("no URL")?;

        let (status, body) = poll(Duration::from_secs(30), Duration::from_millis(200), || {
            curl.status(&url, &[]).ok().filter(|(s, _)| *s != 502)
        })
        .ok_or("the authorized pod never answered")?;
        ensure!(status == 401, "no token got {status}: {body}");

        // The API token opens it, and the pod never sees it.
        let bearer = format!("Authorization: Bearer {}", server.token);
        let (status, body) = curl.status(&format!("{url}/?headers"), &["-H", &bearer])?;
        ensure!(
            status == 200 && body.contains("authorization absent"),
            "the API token got {status}: {body}"
        );

        // A scoped token from the CLI: its last line is the token alone.
        let mint = |port: &str, ttl: &str| -> Res<String> {
            let out = api.cli(&["container", "token", &pod.id, "--port", port, "--ttl", ttl])?;
            ensure!(
                out.status.success(),
                "berth container token: {}",
                out.show()
            );
            Ok(out.stdout.lines().last().unwrap_or("").trim().to_string())
        };
        let token = mint("8080", "10m")?;
        let scoped = format!("Authorization: Bearer {token}");
        let (status, _) = curl.status(&url, &["-H", &scoped])?;
        ensure!(status == 200, "a scoped token got {status}");
        let other_port = mint("8081", "10m")?;
        let (status, _) = curl.status(
            &url,
            &["-H", &format!("Authorization: Bearer {other_port}")],
        )?;
        ensure!(
            status == 401,
            "a token for port 8081 opened port 8080 ({status})"
        );
        let (status, _) = curl.status(&url, &["-H", "Authorization: Bearer bpt_forged"])?;
        ensure!(status == 401, "a forged token got {status}");

        // ?berth_token= once: a cookie for this host and a redirect to the clean URL.
        let jar = std::env::temp_dir().join(format!("berth-jar-{}", random_hex(4)));
        let jar_s = jar.display().to_string();
        let first = curl.run(
            &format!("{url}/tree?x=1&berth_token={token}"),
            &[
                "-c",
                &jar_s,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{redirect_url}",
            ],
        );
        let with_cookie = curl.status(&format!("{url}/?headers"), &["-b", &jar_s]);
        let jar_text = std::fs::read_to_string(&jar).unwrap_or_default();
        let _ = std::fs::remove_file(&jar);
        let first = first?;
        ensure!(
            first == format!("303 {url}/tree?x=1"),
            "?berth_token= answered {first:?}, expected a 303 to the clean URL"
        );
        ensure!(
            jar_text.contains("#HttpOnly_") && jar_text.contains("berth_token"),
            "no HttpOnly berth_token cookie was set: {jar_text}"
        );
        let (status, body) = with_cookie?;
        ensure!(
            status == 200 && body.contains("cookie absent"),
            "the cookie got {status} (the pod must not see it): {body}"
        );

        // Expiry and revocation.
        let short = mint("8080", "1s")?;
        std::thread::sleep(Duration::from_millis(2100));
        let (status, _) = curl.status(&url, &["-H", &format!("Authorization: Bearer {short}")])?;
        ensure!(status == 401, "an expired token got {status}");
        let listed: serde_json::Value = {
            let (code, text) = api.send(
                api.request(
                    reqwest::Method::GET,
                    &format!("/v1/containers/{}/tokens", pod.id),
                ),
                "list tokens",
            )?;
            ensure!(code == 200, "listing tokens: {code} {text}");
            serde_json::from_str(&text).ctx("parse tokens")?
        };
        let token_id = listed["tokens"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["port"] == 8080))
            .and_then(|t| t["id"].as_str())
            .ok_or_else(|| format!("no live token for port 8080 in {listed}"))?
            .to_string();
        let out = api.cli(&["container", "revoke", &pod.id, &token_id])?;
        ensure!(
            out.status.success(),
            "berth container revoke: {}",
            out.show()
        );
        let (status, _) = curl.status(&url, &["-H", &scoped])?;
        ensure!(status == 401, "a revoked token got {status}");
        Ok(())
    })
}
