//! Bad requests get clear 4xx answers and leave nothing behind; pull problems end FAILED.

use berth_api::{ApiError, ContainerStatus, ErrorCode};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::client::parse_json;
use crate::common::harness::Env;
use crate::common::{random_hex, timeouts, Res};
use crate::ensure;

const BAD_REFERENCE: &str = "UPPER CASE::bad";

/// Checks an error answer: the status, the `{"error": {"code", "message"}}` shape, the code.
fn expect_error(
    status: StatusCode,
    body: &str,
    want: StatusCode,
    code: ErrorCode,
    what: &str,
) -> Res<String> {
    ensure!(
        status == want,
        "{what}: answered {status}, expected {want}: {body}"
    );
    let err: ApiError = parse_json(body, &format!("an API error for {what}"))?;
    ensure!(
        err.error.code == code,
        "{what}: error code {:?}, expected {code:?}",
        err.error.code
    );
    ensure!(
        !err.error.message.trim().is_empty(),
        "{what}: the error message is empty"
    );
    Ok(err.error.message)
}

/// No container exists with one of the images only invalid requests used.
fn expect_nothing_created(env: &Env) -> Res<()> {
    let all = env.api.list(true)?;
    let leftovers: Vec<String> = all
        .iter()
        .filter(|c| c.image == env.images.testapp_validation || c.image == BAD_REFERENCE)
        .map(|c| format!("{} ({}, {})", c.id, c.image, c.status))
        .collect();
    ensure!(
        leftovers.is_empty(),
        "rejected requests left containers behind: {leftovers:?}"
    );
    Ok(())
}

pub fn rejects_bad_fields(env: &Env) -> Res<()> {
    let api = &env.api;
    let image = env.images.testapp_validation.as_str();
    let base = || json!({"image": image, "ports": [8080]});
    let set = |key: &str, value: Value| {
        let mut spec = base();
        spec[key] = value;
        spec
    };
    let cases: [(&str, Value, &str); 20] = [
        (
            "bad reference syntax",
            json!({"image": BAD_REFERENCE}),
            "image",
        ),
        ("empty image", json!({"image": ""}), "image"),
        ("missing image", json!({"ports": [8080]}), "image"),
        ("cpu \"lots\"", set("cpu", json!("lots")), "cpu"),
        ("cpu 100 cores", set("cpu", json!(100)), "cpu"),
        ("memory \"1Qi\"", set("memory", json!("1Qi")), "memory"),
        ("memory 1 MiB", set("memory", json!(1)), "memory"),
        ("port 0", set("ports", json!([0])), "ports"),
        ("port 70000", set("ports", json!([70000])), "ports"),
        (
            "duplicated port",
            set("ports", json!([8080, 8080])),
            "ports",
        ),
        ("env name 1BAD", set("env", json!({"1BAD": "x"})), "env"),
        ("env name A=B", set("env", json!({"A=B": "x"})), "env"),
        ("unknown field", set("bogus", json!(1)), "bogus"),
        (
            "keep-warm -5",
            set("keep_warm_seconds", json!(-5)),
            "keep_warm_seconds",
        ),
        // Once multiplied into milliseconds without a bound, it stopped the pod at once.
        (
            "keep-warm i64::MAX",
            set("keep_warm_seconds", json!(i64::MAX)),
            "keep_warm_seconds",
        ),
        (
            "keep-warm beyond a year",
            set("keep_warm_seconds", json!(366 * 24 * 3600)),
            "keep_warm_seconds",
        ),
        (
            "stop signal SIGNOPE",
            set("stop_signal", json!("SIGNOPE")),
            "stop_signal",
        ),
        // It would only suspend the pod, so every stop would end in SIGKILL.
        (
            "stop signal SIGSTOP",
            set("stop_signal", json!("SIGSTOP")),
            "stop_signal",
        ),
        (
            "stop grace beyond an hour",
            set("stop_grace_seconds", json!(3601)),
            "stop_grace_seconds",
        ),
        ("init \"yes\"", set("init", json!("yes")), "init"),
    ];
    let mut failures = Vec::new();
    for (what, body, field) in &cases {
        let (status, text) = api.create_raw(&body.to_string(), Some(&api.token))?;
        match expect_error(
            status,
            &text,
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidArgument,
            what,
        ) {
            Ok(message) if message.contains(field) => {}
            Ok(message) => failures.push(format!(
                "{what}: the message does not name {field:?}: {message:?}"
            )),
            Err(e) => failures.push(e),
        }
    }

    for (what, body) in [
        ("a body that is not JSON", "this is not json"),
        ("a JSON array body", "[1, 2]"),
    ] {
        let (status, text) = api.create_raw(body, Some(&api.token))?;
        if let Err(e) = expect_error(
            status,
            &text,
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidArgument,
            what,
        ) {
            failures.push(e);
        }
    }
    ensure!(
        failures.is_empty(),
        "bad requests were not rejected properly:\n  {}",
        failures.join("\n  ")
    );
    expect_nothing_created(env)
}

pub fn requires_token(env: &Env) -> Res<()> {
    let api = &env.api;
    let body = json!({"image": env.images.testapp_validation, "ports": [8080]}).to_string();
    let wrong = format!("wrong-{}", random_hex(8));
    for (what, token) in [
        ("POST without a token", None),
        ("POST with a wrong token", Some(wrong.as_str())),
    ] {
        let (status, text) = api.create_raw(&body, token)?;
        expect_error(
            status,
            &text,
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthenticated,
            what,
        )?;
    }
    for path in ["/v1/containers", "/v1/containers?all=true"] {
        let (status, text) = api.send(api.request_with_token(Method::GET, path, None), path)?;
        expect_error(
            status,
            &text,
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthenticated,
            &format!("GET {path} without a token"),
        )?;
    }
    // The CLI with a wrong token fails clearly instead of pretending.
    let out = api.cli_with_token(&["container", "list", "--format", "json"], &wrong)?;
    ensure!(
        !out.status.success(),
        "berth container list with a wrong token exited 0:\n{}",
        out.show()
    );
    ensure!(
        out.combined().contains("error:"),
        "berth container list with a wrong token printed no \"error:\":\n{}",
        out.show()
    );
    expect_nothing_created(env)
}

/// Images that cannot be pulled: the create is accepted, the container ends FAILED with a
/// reason that names the image.
pub fn pull_failures(env: &Env) -> Res<()> {
    let api = &env.api;
    let tag = format!("no-such-tag-{}", random_hex(4));
    let cases = [
        (
            format!("{}/testapp:{tag}", env.registry.host()),
            tag.clone(),
        ),
        (
            format!("{}/no-such-repo-{tag}:latest", env.registry.host()),
            format!("no-such-repo-{tag}"),
        ),
        (
            "127.0.0.1:1/x:latest".to_string(),
            "127.0.0.1:1".to_string(),
        ),
    ];
    let mut pods = Vec::new();
    for (image, _) in &cases {
        pods.push(api.launch(json!({"image": image, "ports": [8080]}))?);
    }
    for (pod, (image, needle)) in pods.iter().zip(&cases) {
        let c = api.wait_terminal(&pod.id, timeouts::START)?;
        ensure!(
            c.status == ContainerStatus::Failed,
            "pulling {image} cannot work, yet {} ended {}",
            pod.id,
            c.status
        );
        let reason = c.reason.clone().unwrap_or_default();
        ensure!(
            reason.contains(needle.as_str()),
            "the failure reason for {image} does not name it: {reason:?}"
        );
        ensure!(
            !api.list(false)?.iter().any(|l| l.id == pod.id),
            "the FAILED {} is still in the default list of live containers",
            pod.id
        );
    }
    Ok(())
}

/// An image with neither ENTRYPOINT nor CMD, and no entrypoint in the request, cannot start.
pub fn image_without_command(env: &Env) -> Res<()> {
    let api = &env.api;
    let body = json!({"image": env.images.nocmd, "ports": [8080]}).to_string();
    let (status, text) = api.create_raw(&body, Some(&api.token))?;
    let mentions_command = |s: &str| {
        let s = s.to_ascii_lowercase();
        s.contains("entrypoint") || s.contains("command") || s.contains("cmd")
    };
    if status == StatusCode::BAD_REQUEST {
        let message = expect_error(
            status,
            &text,
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidArgument,
            "nocmd image",
        )?;
        ensure!(
            mentions_command(&message),
            "the 400 for an image without a command does not say so: {message:?}"
        );
        return Ok(());
    }
    ensure!(
        status == StatusCode::ACCEPTED,
        "creating from an image without a command answered {status}: {text}"
    );
    let created: berth_api::Container = parse_json(&text, "a container")?;
    let pod = api.adopt(&created.id)?;
    let c = api.wait_terminal(&pod.id, timeouts::START)?;
    ensure!(
        c.status == ContainerStatus::Failed,
        "an image without ENTRYPOINT or CMD ended {}, expected FAILED\n{}",
        c.status,
        pod.describe()
    );
    let reason = c.reason.unwrap_or_default();
    ensure!(
        mentions_command(&reason),
        "the failure reason does not mention the missing command: {reason:?}"
    );
    Ok(())
}
