//! Reaching pods through the ingress: host routing, websockets, address families, env.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde_json::json;
use tungstenite::{Message, WebSocket};

use super::{testapp_spec, with};
use crate::common::harness::Env;
use crate::common::server::DOMAIN;
use crate::common::{indent, poll, random_hex, timeouts, Res};
use crate::ensure;

/// Reads the next data message, skipping control frames.
pub fn read_data(ws: &mut WebSocket<TcpStream>) -> Res<Message> {
    loop {
        match ws.read().map_err(|e| format!("websocket read: {e}"))? {
            m @ (Message::Text(_) | Message::Binary(_)) => return Ok(m),
            Message::Close(frame) => {
                return Err(format!("websocket closed by the far end: {frame:?}"))
            }
            _ => {}
        }
    }
}

pub fn echo(ws: &mut WebSocket<TcpStream>, msg: Message) -> Res<()> {
    ws.send(msg.clone())
        .map_err(|e| format!("websocket send: {e}"))?;
    let back = read_data(ws)?;
    ensure!(
        back == msg,
        "websocket echo mismatch: sent {} bytes, got back {} bytes",
        msg.len(),
        back.len()
    );
    Ok(())
}

pub fn close(mut ws: WebSocket<TcpStream>) {
    let _ = ws.close(None);
    // Drive the close handshake until the far end confirms (or the connection drops).
    while ws.read().is_ok() {}
}

pub fn websocket_echo(env: &Env) -> Res<()> {
    websocket_echo_under(env, "runc")
}

/// The same pod under gVisor: its URL serves HTTP and carries a websocket, as under runc.
pub fn websocket_echo_under_gvisor(env: &Env) -> Res<()> {
    websocket_echo_under(env, "gvisor")
}

fn websocket_echo_under(env: &Env, runtime: &str) -> Res<()> {
    let api = &env.api;
    // The image's own command: testapp http 8080.
    let pod =
        api.launch(json!({"image": env.images.testapp, "ports": [8080], "runtime": runtime}))?;
    api.wait_running(&pod.id)?;
    pod.wait_http_ok(8080, "/")?;
    let url = pod.url(8080)?;
    let mut ws = api
        .wait_ws_connect(&format!("{url}/ws"), timeouts::HTTP_READY)
        .map_err(|e| format!("{e}\n{}", pod.describe()))?;
    echo(&mut ws, Message::text("hello through the ingress"))?;
    echo(&mut ws, Message::binary(vec![0u8, 1, 2, 254, 255]))?;
    // Larger than typical proxy buffers.
    let big: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    echo(&mut ws, Message::binary(big))?;
    for i in 0..20 {
        echo(&mut ws, Message::text(format!("message {i}")))?;
    }
    close(ws);
    Ok(())
}

pub fn two_pods_same_port(env: &Env) -> Res<()> {
    let api = &env.api;
    let a = api.launch(testapp_spec(env, &["http", "8080", "--text", "A"]))?;
    let b = api.launch(testapp_spec(env, &["http", "8080", "--text", "B"]))?;
    ensure!(
        a.created.stub_id != b.created.stub_id,
        "two different specs got the same stub id {}",
        a.created.stub_id
    );
    api.wait_running(&a.id)?;
    api.wait_running(&b.id)?;
    let (url_a, url_b) = (a.url(8080)?, b.url(8080)?);
    ensure!(url_a != url_b, "two pods share the URL {url_a}");
    let body_a = a.wait_http_ok(8080, "/")?;
    let body_b = b.wait_http_ok(8080, "/")?;
    ensure!(
        body_a.starts_with("A\n"),
        "{url_a} answered {body_a:?}, expected pod A's text"
    );
    ensure!(
        body_b.starts_with("B\n"),
        "{url_b} answered {body_b:?}, expected pod B's text"
    );
    // Both keep answering while running side by side.
    for _ in 0..5 {
        let (_, body_a) = api.ingress_get(&url_a)?;
        let (_, body_b) = api.ingress_get(&url_b)?;
        ensure!(
            body_a.starts_with("A\n") && body_b.starts_with("B\n"),
            "answers got mixed up: {body_a:?} / {body_b:?}"
        );
    }
    ensure!(
        body_a.contains(&format!("BERTH_CONTAINER_ID={}\n", a.id)),
        "{url_a} was answered by another container: {body_a:?}"
    );
    Ok(())
}

pub fn ipv6_only_and_ipv4_only(env: &Env) -> Res<()> {
    let api = &env.api;
    let v6 = api.launch(testapp_spec(
        env,
        &["http", "8080", "--v6only", "--text", "six"],
    ))?;
    let v4 = api.launch(testapp_spec(
        env,
        &["http", "8080", "--v4only", "--text", "four"],
    ))?;
    for (pod, text, family) in [(&v6, "six", "IPv6-only"), (&v4, "four", "IPv4-only")] {
        api.wait_running(&pod.id)?;
        let url = pod.url(8080)?;
        let body = pod
            .wait_http_ok(8080, "/")
            .map_err(|e| format!("an app listening {family} is unreachable: {e}"))?;
        ensure!(
            body.starts_with(&format!("{text}\n")),
            "{url} answered {body:?}"
        );
    }
    Ok(())
}

pub fn env_and_identity(env: &Env) -> Res<()> {
    let api = &env.api;
    let spec = with(
        testapp_spec(env, &["http", "8080"]),
        "env",
        json!({"GREETING": "hi", "EMPTY": ""}),
    );
    let spec = with(spec, "keep_warm_seconds", json!(120));
    let pod = api.launch(spec)?;
    let c = api.wait_running(&pod.id)?;
    let query = "/?env=GREETING&env=EMPTY&env=BERTH_STUB_ID&env=KEEP_WARM_SECONDS&env=PATH\
                 &env=RUST_LOG&env=BERTH_PROFILE";
    let body = pod.wait_http_ok(8080, query)?;
    let expected = [
        format!("BERTH_CONTAINER_ID={}\n", c.id),
        "GREETING=hi\n".to_string(),
        "EMPTY=\n".to_string(),
        format!("BERTH_STUB_ID={}\n", c.stub_id),
        "KEEP_WARM_SECONDS=120\n".to_string(),
        "PATH=/usr/local/bin:/usr/bin:/bin\n".to_string(),
        // The server's own environment must not leak into pods.
        "RUST_LOG unset\n".to_string(),
        "BERTH_PROFILE unset\n".to_string(),
    ];
    for line in expected {
        ensure!(
            body.contains(&line),
            "the pod's environment lacks {:?}; it answered:\n{body}",
            line.trim_end()
        );
    }
    Ok(())
}

/// A pod that is RUNNING but not listening answers 502 or 503 with a readable body, quickly.
pub fn pod_not_listening(env: &Env) -> Res<()> {
    let api = &env.api;
    let pod = api.launch(testapp_spec(env, &["sleep"]))?;
    api.wait_running(&pod.id)?;
    let url = pod.url(8080)?;
    for _ in 0..3 {
        let (status, body) = api.ingress_get(&url)?;
        ensure!(
            status == StatusCode::BAD_GATEWAY || status == StatusCode::SERVICE_UNAVAILABLE,
            "GET {url} of a pod that does not listen answered {status}, expected 502 or 503: {body}"
        );
        ensure!(
            !body.trim().is_empty(),
            "the {status} answer for {url} has an empty body"
        );
    }
    Ok(())
}

pub fn unknown_host(env: &Env) -> Res<()> {
    let api = &env.api;
    let url = format!("http://nosuchstub-8080.{DOMAIN}:{}/", api.ingress.port());
    let (status, body) = api.ingress_get(&url)?;
    ensure!(
        status == StatusCode::NOT_FOUND,
        "GET {url} answered {status}, expected 404: {body}"
    );
    ensure!(
        !body.trim().is_empty(),
        "the 404 for an unknown host has an empty body"
    );
    Ok(())
}

/// The ingress accepts request heads up to 64 KiB; this one is well past that.
const OVERSIZED_HEAD_BYTES: usize = 256 * 1024;
/// How long the ingress may take to answer or close an oversized request.
const REFUSE_WITHIN: Duration = Duration::from_secs(10);

/// How the ingress ended a raw request.
#[derive(Debug)]
enum RawOutcome {
    /// It answered; the bytes read (a status line and more).
    Answered(Vec<u8>),
    /// It closed the connection (FIN or reset) without sending a byte.
    ClosedSilently(&'static str),
    /// The connection was still open after the wait, with these bytes read.
    LeftOpen(Vec<u8>),
}

/// Sends `head` (a whole request head) to the ingress on a fresh connection and reads until
/// the ingress closes the connection or `wait` passes.
fn raw_exchange(ingress: std::net::SocketAddr, head: &[u8], wait: Duration) -> Res<RawOutcome> {
    let mut stream =
        TcpStream::connect(ingress).map_err(|e| format!("connect to the ingress: {e}"))?;
    stream
        .set_read_timeout(Some(wait))
        .and_then(|()| stream.set_write_timeout(Some(wait)))
        .map_err(|e| format!("set socket timeouts: {e}"))?;
    // The ingress may stop reading and reset the connection part-way: that is an answer too.
    if let Err(e) = stream.write_all(head) {
        if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut {
            return Ok(RawOutcome::LeftOpen(Vec::new()));
        }
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) if got.is_empty() => return Ok(RawOutcome::ClosedSilently("closed (FIN)")),
            Ok(0) => return Ok(RawOutcome::Answered(got)),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                return Ok(RawOutcome::LeftOpen(got))
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset && got.is_empty() => {
                return Ok(RawOutcome::ClosedSilently("reset (RST)"))
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                return Ok(RawOutcome::Answered(got))
            }
            Err(e) => return Err(format!("read from the ingress: {e}")),
        }
    }
}

/// The status code of a raw HTTP/1.x answer.
fn status_of(answer: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(answer);
    let line = text.lines().next()?;
    let mut words = line.split_whitespace();
    words.next().filter(|v| v.starts_with("HTTP/1."))?;
    words.next()?.parse().ok()
}

/// A request head larger than the ingress accepts, for a pod that answers 200 to anything, is
/// refused: the answer is a 431, or the ingress closes the connection without answering. A
/// 200 (forwarded), any other status, or a connection left open fails, and the pod must never
/// see the request.
pub fn oversized_head_refused(env: &Env) -> Res<()> {
    let api = &env.api;
    let pod = api.launch(testapp_spec(env, &["http", "8080"]))?;
    api.wait_running(&pod.id)?;
    let url = pod.url(8080)?;
    pod.wait_http_ok(8080, "/")?;
    let host = Url::parse(&url)
        .ok()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port()?)))
        .ok_or_else(|| format!("the pod URL {url} has no host and port"))?;
    let request = |path: &str, filler: usize| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nX-Filler: {}\r\nConnection: close\r\n\r\n",
            "x".repeat(filler)
        )
        .into_bytes()
    };

    // Control: the same request with a small head is forwarded and answered 200, so the raw
    // request is right and a forwarded oversized one would show.
    let control = format!("/head-control-{}", random_hex(4));
    match raw_exchange(api.ingress, &request(&control, 1024), REFUSE_WITHIN)? {
        RawOutcome::Answered(answer) if status_of(&answer) == Some(200) => {}
        other => {
            return Err(format!(
                "precondition: a 1 KiB request head for {url}{control} should be answered 200, \
                 got {}",
                show_outcome(&other)
            ))
        }
    }

    let path = format!("/oversized-{}", random_hex(4));
    let outcome = raw_exchange(
        api.ingress,
        &request(&path, OVERSIZED_HEAD_BYTES),
        REFUSE_WITHIN,
    )?;
    match &outcome {
        RawOutcome::Answered(answer) if status_of(answer) == Some(431) => {}
        RawOutcome::ClosedSilently(_) => {}
        other => {
            return Err(format!(
                "a {} KiB request head for {url}{path} should get a 431 or the connection \
                 closed without an answer; got {}",
                OVERSIZED_HEAD_BYTES / 1024,
                show_outcome(other)
            ))
        }
    }
    // The pod logged the control request; the oversized one never reached it.
    let logged = poll(Duration::from_secs(5), Duration::from_millis(250), || {
        api.logs(&pod.id).ok().filter(|l| l.contains(&control))
    })
    .ok_or_else(|| format!("the pod never logged the control request {control}"))?;
    ensure!(
        !logged.contains(&path),
        "the ingress forwarded the oversized request ({outcome:?} to the client); the pod \
         logged:\n{}",
        indent(&logged)
    );
    // The ingress serves on.
    pod.wait_http_ok(8080, "/")?;
    Ok(())
}

fn show_outcome(outcome: &RawOutcome) -> String {
    let head = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        text.lines().next().unwrap_or_default().to_string()
    };
    match outcome {
        RawOutcome::Answered(answer) => format!("the answer {:?}", head(answer)),
        RawOutcome::ClosedSilently(how) => format!("the connection {how} without an answer"),
        RawOutcome::LeftOpen(got) if got.is_empty() => {
            format!("no answer and the connection still open after {REFUSE_WITHIN:?}")
        }
        RawOutcome::LeftOpen(got) => format!(
            "a partial answer {:?} and the connection still open after {REFUSE_WITHIN:?}",
            head(got)
        ),
    }
}
