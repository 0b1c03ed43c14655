//! Deployments through the real ingress: cold starts after scale-to-zero, concurrent first
//! requests, version switches under load, and bad input that leaves nothing behind.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::guide::DeploymentGuard;
use crate::common::client::parse_json;
use crate::common::harness::Env;
use crate::common::{random_hex, timeouts, Res};
use crate::ensure;

/// Deploys the test app as `name` with `env`; returns the new version's container id.
fn deploy(env: &Env, name: &str, vars: Value) -> Res<String> {
    let body = json!({
        "name": name,
        "pod": {
            "image": format!("{}/testapp:latest", env.registry.addr),
            "env": vars,
            "keep_warm_seconds": 300,
        }
    });
    let (status, text) = env.api.send(
        env.api.request(Method::POST, "/v1/deployments").json(&body),
        "POST /v1/deployments",
    )?;
    ensure!(
        status == StatusCode::ACCEPTED,
        "deploy answered {status}: {text}"
    );
    let answer: Value = parse_json(&text, "deploy answer")?;
    answer["container"]["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no container in {text}"))
}

fn deployment(env: &Env, name: &str) -> Res<Value> {
    let (status, text) = env.api.send(
        env.api
            .request(Method::GET, &format!("/v1/deployments/{name}")),
        "GET deployment",
    )?;
    ensure!(status == StatusCode::OK, "GET deployment {status}: {text}");
    parse_json(&text, "deployment")
}

/// Waits until `version` of the deployment is the active one.
fn wait_active(env: &Env, name: &str, version: u64) -> Res<Value> {
    crate::common::poll(timeouts::START, Duration::from_millis(100), || {
        let d = deployment(env, name).ok()?;
        (d["version"] == version).then_some(d)
    })
    .ok_or_else(|| {
        format!(
            "{name} v{version} never became active: {:?}",
            deployment(env, name)
        )
    })
}

fn url(env: &Env, name: &str) -> String {
    format!(
        "http://{name}-8080.{}:{}/",
        crate::common::server::DOMAIN,
        env.api.ingress.port()
    )
}

/// Containers of the deployment that have not ended.
fn live_containers(env: &Env, name: &str) -> Res<Vec<String>> {
    Ok(env
        .api
        .list(false)?
        .into_iter()
        .filter(|c| {
            c.deployment_id
                .as_deref()
                .is_some_and(|d| d.starts_with(&format!("{name}-v")))
        })
        .map(|c| c.id)
        .collect())
}

/// A deployment whose container was stopped answers its next requests: ten at once all get
/// 200, and one container starts for them.
pub fn cold_start_wakes_one_container(env: &Env) -> Res<()> {
    let name = format!("wake-{}", random_hex(3));
    let _guard = DeploymentGuard { env, name: &name };
    let first = deploy(env, &name, json!({}))?;
    wait_active(env, &name, 1)?;
    env.api
        .wait_http_ok(&url(env, &name), timeouts::HTTP_READY)?;
    env.api.stop(&first)?;
    env.api.wait_terminal(&first, timeouts::STOP)?;
    ensure!(
        live_containers(env, &name)?.is_empty(),
        "the deployment still has containers after the stop"
    );

    let answers: Vec<Res<(StatusCode, String)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..10)
            .map(|_| s.spawn(|| env.api.ingress_get(&url(env, &name))))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a request thread panicked".into()))
            })
            .collect()
    });
    for answer in &answers {
        match answer {
            Ok((StatusCode::OK, _)) => {}
            other => return Err(format!("a first request after scale-to-zero got {other:?}")),
        }
    }
    // A port the deployment does not serve is a quick 404, not a wait for the wake limit.
    let other_port = url(env, &name).replace("-8080.", "-8081.");
    let asked = Instant::now();
    let (status, _) = env.api.ingress_get(&other_port)?;
    ensure!(
        status == StatusCode::NOT_FOUND && asked.elapsed() < Duration::from_secs(10),
        "a port the deployment does not serve answered {status} after {:?}",
        asked.elapsed()
    );
    let live = live_containers(env, &name)?;
    ensure!(
        live.len() == 1,
        "ten concurrent first requests started {} containers: {live:?}",
        live.len()
    );
    ensure!(!live.contains(&first), "the stopped container came back?");
    Ok(())
}

/// A new version replaces the old one while requests keep coming, and none of them fails.
pub fn version_switch_fails_no_request(env: &Env) -> Res<()> {
    let name = format!("switch-{}", random_hex(3));
    let _guard = DeploymentGuard { env, name: &name };
    deploy(env, &name, json!({"APP_VERSION": "one"}))?;
    wait_active(env, &name, 1)?;
    let target = format!("{}?env=APP_VERSION", url(env, &name));
    env.api.wait_http_ok(&target, timeouts::HTTP_READY)?;

    let stop = AtomicBool::new(false);
    let (failures, saw_two, requests) = std::thread::scope(|s| -> Res<(Vec<String>, bool, u32)> {
        let looper = s.spawn(|| {
            let (mut failures, mut saw_two, mut n) = (Vec::new(), false, 0u32);
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                match env.api.ingress_get(&target) {
                    Ok((StatusCode::OK, body)) => saw_two |= body.contains("APP_VERSION=two"),
                    other => failures.push(format!("{other:?}")),
                }
            }
            (failures, saw_two, n)
        });
        let result = deploy(env, &name, json!({"APP_VERSION": "two"}))
            .and_then(|_| wait_active(env, &name, 2));
        // Keep the loop going past the switch and the old version's retirement.
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::SeqCst);
        let outcome = looper
            .join()
            .map_err(|_| "the request loop panicked".to_string())?;
        result?;
        Ok(outcome)
    })?;
    ensure!(
        failures.is_empty(),
        "{} of {requests} requests failed during the switch: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    ensure!(
        saw_two,
        "no request reached v2 after the switch ({requests} requests)"
    );
    let d = deployment(env, &name)?;
    ensure!(
        d["versions"][1]["status"] == "REPLACED",
        "v1 is not REPLACED: {d}"
    );
    Ok(())
}

/// A bad name or a missing secret is refused with 400 and no deployment is recorded.
pub fn bad_deploys_leave_nothing(env: &Env) -> Res<()> {
    let image = format!("{}/testapp:latest", env.registry.addr);
    for (name, pod, expected) in [
        ("Not_A_Label", json!({"image": image}), "name:"),
        (
            "ok-name-x1",
            json!({"image": image, "secrets": ["NO_SUCH_SECRET_X1"]}),
            "NO_SUCH_SECRET_X1",
        ),
        ("ok-name-x2", json!({"image": image, "gpu": "A10G"}), "gpu"),
    ] {
        let (status, text) = env.api.send(
            env.api
                .request(Method::POST, "/v1/deployments")
                .json(&json!({"name": name, "pod": pod})),
            "POST /v1/deployments",
        )?;
        ensure!(
            status == StatusCode::BAD_REQUEST && text.contains(expected),
            "{name}: {status} {text} (expected 400 naming {expected})"
        );
        let (status, _) = env.api.send(
            env.api
                .request(Method::GET, &format!("/v1/deployments/{name}")),
            "GET deployment",
        )?;
        ensure!(
            status == StatusCode::NOT_FOUND,
            "a refused deploy of {name} left a deployment ({status})"
        );
    }
    // A host that names no deployment and no pod is a 404, not a wake.
    let (status, _) = env.api.ingress_get(&url(env, "never-deployed"))?;
    ensure!(
        status == StatusCode::NOT_FOUND,
        "unknown deployment host answered {status}"
    );
    Ok(())
}
