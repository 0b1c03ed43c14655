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
