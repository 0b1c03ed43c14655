//! Container output: stored with stream and timestamp, shown by the CLI, followed live.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::client::lines_of;
use crate::common::harness::Env;
use crate::common::{indent, poll, random_hex, Res};
use crate::ensure;

const STDERR_LINE: &str = "testapp stderr ready";

/// Whether `line` looks like `<RFC3339 timestamp> <stdout|stderr> <text>`; returns (stream, text).
fn parse_stored_line(line: &str) -> Option<(&str, &str)> {
    let (ts, rest) = line.split_once(' ')?;
    let (stream, text) = rest.split_once(' ').unwrap_or((rest, ""));
    let b = ts.as_bytes();
    let date_ok = b.len() >= 20
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && (ts.ends_with('Z') || ts.get(19..).is_some_and(|z| z.contains(['+', '-'])));
    (date_ok && (stream == "stdout" || stream == "stderr")).then_some((stream, text))
}

pub fn stdout_stderr_and_follow(env: &Env) -> Res<()> {
    let api = &env.api;
    let pod = api.launch(json!({"image": env.images.testapp, "ports": [8080]}))?;
    api.wait_running(&pod.id)?;
    let probe = format!("/logs-probe-{}", random_hex(4));
    pod.wait_http_ok(8080, &probe)?;

    // The CLI shows the text of each line.
    let wanted = ["listening on", STDERR_LINE, probe.as_str()];
    let mut last = String::new();
    let found = poll(Duration::from_secs(15), Duration::from_millis(500), || {
        let out = api.cli(&["container", "logs", &pod.id]).ok()?;
        last = out.show();
        (out.status.success() && wanted.iter().all(|w| out.stdout.contains(w)))
            .then_some(out.stdout)
    });
    let text = found.ok_or_else(|| {
        format!(
            "berth container logs {} never showed all of {wanted:?}; last run:\n{last}",
            pod.id
        )
    })?;
    ensure!(
        text.lines().any(|l| l.trim_end() == STDERR_LINE),
        "berth container logs should print only each line's text, but no line is exactly \
         {STDERR_LINE:?}:\n{}",
        indent(&text)
    );

    // The API stores `<timestamp> <stream> <text>`.
    let stored = api.logs(&pod.id)?;
    for line in stored.lines().filter(|l| !l.is_empty()) {
        ensure!(
            parse_stored_line(line).is_some(),
            "log line {line:?} is not \"<RFC3339 timestamp> <stdout|stderr> <text>\""
        );
    }
    let stream_of = |needle: &str| {
        stored
            .lines()
            .filter_map(parse_stored_line)
            .find(|(_, t)| t.contains(needle))
            .map(|(s, _)| s)
    };
    ensure!(
        stream_of(STDERR_LINE) == Some("stderr"),
        "{STDERR_LINE:?} is not stored as stderr:\n{stored}"
    );
    ensure!(
        stream_of("listening on") == Some("stdout"),
        "\"listening on\" is not stored as stdout:\n{stored}"
    );

    let out = api.cli(&["container", "logs", &pod.id, "--timestamps"])?;
    ensure!(
        out.status.success(),
        "berth container logs --timestamps failed:\n{}",
        out.show()
    );
    ensure!(
        out.stdout
            .lines()
            .filter_map(parse_stored_line)
            .any(|(s, t)| s == "stderr" && t.trim_end() == STDERR_LINE),
        "berth container logs --timestamps does not show the stored line for {STDERR_LINE:?}:\n{}",
        out.show()
    );

    // --follow prints new lines as they are written.
    let mut child = api.cli_spawn(&["container", "logs", &pod.id, "--follow"])?;
    let stdout = child
        .stdout
        .take()
        .ok_or("no stdout pipe for logs --follow")?;
    let lines = lines_of(stdout);
    // Let it print the backlog first.
    std::thread::sleep(Duration::from_millis(500));
    let follow_probe = format!("/follow-probe-{}", random_hex(4));
    let result = (|| -> Res<()> {
        pod.wait_http_ok(8080, &follow_probe)?;
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match lines.recv_timeout(Duration::from_millis(200)) {
                Ok(line) if line.contains(&follow_probe) => return Ok(()),
                Ok(line) => seen.push(line),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(format!(
                        "berth container logs --follow exited before the new line came; it printed:\n{}",
                        indent(&seen.join("\n"))
                    ))
                }
            }
        }
        Err(format!(
            "berth container logs --follow did not print the request to {follow_probe} within 15s; \
             it printed:\n{}",
            indent(&seen.join("\n"))
        ))
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// Apart from the other test servers' networks.
const ROTATION_NETWORK: crate::common::server::PodNetwork = crate::common::server::PodNetwork {
    bridge: "berthtest11",
    subnet_v4: "10.226.0.0/16",
    subnet_v6: None,
};

/// A pod that writes far more than `--container-log-max-mib 1`: its log on disk stays within
/// twice the limit, the logs read back end with its newest lines in order, with no gap
/// between the rotated part and the current one, and they are still there after the pod
/// stopped and after the server restarted. The server's own log (`--log-file`, with
/// `--log-max-mib 1`) rotates too, under a few MiB of access-log lines.
pub fn logs_rotate_by_size(env: &Env) -> Res<()> {
    use crate::common::client::Api;
    use crate::common::harness::{finish_own_server, own_server_dir};
    use crate::common::server::Server;

    let dir = own_server_dir(env, &ROTATION_NETWORK, "logs")?;
    let server_log = dir.join("berth.log");
    let server = Server::start_with_args(
        &dir,
        &env.registry.host(),
        ROTATION_NETWORK,
        &[
            "--container-log-max-mib".to_string(),
            "1".to_string(),
            "--log-file".to_string(),
            server_log.display().to_string(),
            "--log-max-mib".to_string(),
            "1".to_string(),
        ],
    )?;
    let api = Api::new(&server)?;
    let outcome = rotation(env, &server, &api)
        .and_then(|()| server_log_rotates(&server, &server_log))
        .map_err(|e| {
            format!(
                "{e}
the end of the server's own log {}:
{}",
                server_log.display(),
                indent(&crate::common::tail_file(&server_log, 30))
            )
        });
    finish_own_server(&server, &api, &ROTATION_NETWORK, outcome)
}

const ROTATION_LINES: usize = 40_000;

fn rotation(
    env: &Env,
    server: &crate::common::server::Server,
    api: &crate::common::client::Api,
) -> Res<()> {
    let script = format!(
        "i=0; while [ $i -lt {ROTATION_LINES} ]; do \
         echo \"line $i of a chatty pod, padded to fill the log faster\"; i=$((i+1)); done; \
         echo chatty-done; exec sleep 3600"
    );
    let pod = api.launch(json!({
        "image": env.images.busybox,
        "entrypoint": ["sh", "-c", script],
        "keep_warm_seconds": -1,
    }))?;
    api.wait_running(&pod.id)?;
    api.wait_logged(&pod.id, "chatty-done")?;

    let files = server.state_dir.join("containers").join(&pod.id);
    let size = |name: &str| {
        std::fs::metadata(files.join(name))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    let (current, rotated) = (size("container.log"), size("container.log.1"));
    ensure!(
        rotated > 0 && current + rotated <= 2 << 20,
        "the log of a pod that wrote ~4 MiB is {current} + {rotated} bytes on disk; with \
         --container-log-max-mib 1 it should be rotated and at most 2 MiB"
    );
    check_tail(&api.logs(&pod.id)?, "while running")?;

    api.stop(&pod.id)?;
    api.wait_terminal(&pod.id, Duration::from_secs(30))?;
    check_tail(&api.logs(&pod.id)?, "after the pod stopped")?;
    server.stop()?;
    server.restart()?;
    check_tail(&api.logs(&pod.id)?, "after a server restart")?;
    Ok(())
}

/// Access-log lines (one per ingress request, each naming a long unknown host) fill the
/// server's `--log-file` past its 1 MiB limit twice over: it moves to `<file>.1`, neither
/// part grows far past the limit, and the newest request is in the current file.
fn server_log_rotates(server: &crate::common::server::Server, log: &std::path::Path) -> Res<()> {
    use crate::common::client::RawHttp;

    const REQUESTS: usize = 8_000;
    // Labels of 50 (a DNS label may have 63), 200 characters in all.
    let pad = vec!["x".repeat(49); 4].join(".");
    let host = |i: usize| format!("http://{pad}-{i}.{}", crate::common::server::DOMAIN);
    let mut conn = RawHttp::connect(server.ingress, &host(0))?;
    for i in 0..REQUESTS {
        // A new connection per request: each names its own Host.
        if i > 0 {
            conn = RawHttp::connect(server.ingress, &host(i))?;
        }
        let (status, body) = conn.get("/")?;
        ensure!(
            status == 404,
            "an unknown host through the ingress answered {status}: {body}"
        );
    }
    let last = format!("{pad}-{}.", REQUESTS - 1);
    let rotated = {
        let mut name = log.as_os_str().to_owned();
        name.push(".1");
        std::path::PathBuf::from(name)
    };
    let logged = poll(Duration::from_secs(10), Duration::from_millis(200), || {
        std::fs::read_to_string(log)
            .ok()
            .filter(|text| text.contains(&last))
    });
    ensure!(
        logged.is_some(),
        "the server's log {} never showed the last request (host {last}...)",
        log.display()
    );
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let (current, old) = (size(log), size(&rotated));
    ensure!(
        old > 0 && current <= 3 << 19 && old <= 3 << 19,
        "after ~3 MiB of access log with --log-max-mib 1 the server's log is {current} bytes and          {} is {old}: it should have rotated, each part near 1 MiB",
        rotated.display()
    );
    Ok(())
}

/// The numbered lines in `logs` are consecutive and end with the last one.
fn check_tail(logs: &str, when: &str) -> Res<()> {
    let numbers: Vec<usize> = logs
        .lines()
        .filter_map(|l| l.split_once(" line ").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split(' ').next()?.parse().ok())
        .collect();
    ensure!(
        numbers.len() > 1000 && logs.contains("chatty-done"),
        "{when}: the logs hold {} numbered lines and {} the last one:\n{}",
        numbers.len(),
        if logs.contains("chatty-done") {
            "have"
        } else {
            "lack"
        },
        indent(&logs.lines().rev().take(5).collect::<Vec<_>>().join("\n"))
    );
    let gap = numbers.windows(2).find(|w| w[1] != w[0] + 1);
    ensure!(
        gap.is_none() && numbers.last() == Some(&(ROTATION_LINES - 1)),
        "{when}: the numbered lines should run without a gap up to {}; found {gap:?}, last {:?}",
        ROTATION_LINES - 1,
        numbers.last()
    );
    Ok(())
}
