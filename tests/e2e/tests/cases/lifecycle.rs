//! How containers end: exit codes, stop, idle keep-warm, memory limits.

use std::time::{Duration, Instant};

use berth_api::ContainerStatus;
use serde_json::json;
use tungstenite::Message;

use super::ingress::{close, echo};
use super::{testapp_spec, with};
use crate::common::client::{Pod, RawHttp};
use crate::common::harness::Env;
use crate::common::{poll, timeouts, Res};
use crate::ensure;

/// How long after the last connection closes a keep_warm_seconds=2 pod may take to stop.
const IDLE_STOP_WITHIN: Duration = Duration::from_secs(15);
/// How long the keep-warm tests hold a connection open.
const HOLD: Duration = Duration::from_secs(8);

pub fn exit_code(env: &Env) -> Res<()> {
    let api = &env.api;
    let seven = api.launch(testapp_spec(env, &["exit", "7", "--after-ms", "300"]))?;
    let zero = api.launch(testapp_spec(env, &["exit", "0", "--after-ms", "300"]))?;
    for (pod, code) in [(&seven, 7), (&zero, 0)] {
        let c = api.wait_terminal(&pod.id, timeouts::START)?;
        ensure!(
            c.status == ContainerStatus::Exited && c.exit_code == Some(code),
            "an entrypoint that exits {code} left {} as {} with exit_code {:?}, expected EXITED {code}\n{}",
            pod.id,
            c.status,
            c.exit_code,
            pod.describe()
        );
        ensure!(
            c.finished_at.is_some(),
            "{} exited but has no finished_at",
            pod.id
        );
        let last_line = format!("exiting with {code}");
        let logged = poll(Duration::from_secs(5), Duration::from_millis(250), || {
            api.logs(&pod.id).ok().filter(|l| l.contains(&last_line))
        });
        ensure!(
            logged.is_some(),
            "the log of {} lacks the app's last line {last_line:?}:\n{}",
            pod.id,
            api.logs(&pod.id).unwrap_or_else(|e| e)
        );
    }
    Ok(())
}

pub fn stop_via_api(env: &Env) -> Res<()> {
    let api = &env.api;
    let pod = api.launch(testapp_spec(env, &["http", "8080"]))?;
    api.wait_running(&pod.id)?;
    let url = pod.url(8080)?;
    pod.wait_http_ok(8080, "/")?;
    ensure!(
        api.list(false)?.iter().any(|c| c.id == pod.id),
        "GET /v1/containers does not list the running {}",
        pod.id
    );

    let started = Instant::now();
    let answer = api.stop(&pod.id)?;
    ensure!(
        answer.id == pod.id,
        "stopping {} answered with container {}",
        pod.id,
        answer.id
    );
    let c = api.wait_terminal(&pod.id, timeouts::STOP)?;
    ensure!(
        c.status == ContainerStatus::Stopped,
        "after a stop request {} is {} (reason {:?}), expected STOPPED",
        pod.id,
        c.status,
        c.reason
    );
    // The testapp exits on SIGTERM at once: no need to wait for the SIGKILL escalation.
    ensure!(
        started.elapsed() < Duration::from_secs(15),
        "stopping an app that exits on SIGTERM took {:.1?}",
        started.elapsed()
    );
    ensure!(
        c.started_at.is_some() && c.finished_at.is_some(),
        "a stopped container lacks started_at or finished_at: {c:?}"
    );
    ensure!(
        !api.list(false)?.iter().any(|c| c.id == pod.id),
        "GET /v1/containers still lists the stopped {}",
        pod.id
    );
    ensure!(
        api.list(true)?
            .iter()
            .any(|c| c.id == pod.id && c.status == ContainerStatus::Stopped),
        "GET /v1/containers?all=true does not list the stopped {}",
        pod.id
    );
    let (status, _) = api.ingress_get(&url)?;
    ensure!(
        !status.is_success(),
        "GET {url} still answered {status} after the pod stopped"
    );
    Ok(())
}

/// Waits for an idle pod to stop on its own; `since` is when its last connection closed.
fn expect_idle_stop(env: &Env, pod: &Pod<'_>, since: Instant) -> Res<()> {
    let c = env.api.wait_for(
        &pod.id,
        "stopped by its keep-warm timer",
        IDLE_STOP_WITHIN,
        |c| c.status.is_terminal(),
    )?;
    ensure!(
        c.status == ContainerStatus::Stopped,
        "an idle pod ended as {} (reason {:?}), expected STOPPED",
        c.status,
        c.reason
    );
    let idle_for = since.elapsed();
    ensure!(
        idle_for >= Duration::from_secs(1),
        "the pod stopped {idle_for:.1?} after its last connection, before its 2s keep-warm period"
    );
    Ok(())
}

pub fn keep_warm_idle_stop(env: &Env) -> Res<()> {
    let api = &env.api;
    let pod = api.launch(with(
        testapp_spec(env, &["http", "8080"]),
        "keep_warm_seconds",
        json!(2),
    ))?;
    let c = api.wait_running(&pod.id)?;
    ensure!(
        c.keep_warm_seconds == 2,
        "keep_warm_seconds is {}, expected 2",
        c.keep_warm_seconds
    );
    pod.wait_http_ok(8080, "/")?;
    let last_request = Instant::now();
    expect_idle_stop(env, &pod, last_request)
}

/// An open websocket through the ingress keeps a keep_warm_seconds=2 pod running.
pub fn keep_warm_held_websocket(env: &Env) -> Res<()> {
    let api = &env.api;
    let pod = api.launch(with(
        testapp_spec(env, &["http", "8080"]),
        "keep_warm_seconds",
        json!(2),
    ))?;
    api.wait_running(&pod.id)?;
    let url = pod.url(8080)?;
    let mut ws = api.wait_ws_connect(&format!("{url}/ws"), timeouts::HTTP_READY)?;
    echo(&mut ws, Message::text("hold"))?;
    hold_and_watch(env, &pod, "a websocket")?;
    echo(&mut ws, Message::text("still connected after the hold"))?;
    close(ws);
    expect_idle_stop(env, &pod, Instant::now())
}

/// An idle HTTP keep-alive connection through the ingress keeps the pod running too.
pub fn keep_warm_held_http_keepalive(env: &Env) -> Res<()> {
    let api = &env.api;
    let pod = api.launch(with(
        testapp_spec(env, &["http", "8080"]),
        "keep_warm_seconds",
        json!(2),
    ))?;
    api.wait_running(&pod.id)?;
    let url = pod.url(8080)?;
    pod.wait_http_ok(8080, "/")?;
    let mut conn = RawHttp::connect(api.ingress, &url)?;
    let (status, body) = conn.get("/first")?;
    ensure!(
        status == 200,
        "GET /first on a keep-alive connection answered {status}: {body}"
    );
    hold_and_watch(env, &pod, "an HTTP keep-alive connection")?;
    let (status, body) = conn.get("/second")?;
    ensure!(
        status == 200,
        "a second request on the held keep-alive connection answered {status}: {body}"
    );
    drop(conn);
    expect_idle_stop(env, &pod, Instant::now())
}

/// Checks every half second for `HOLD` that the pod is still RUNNING.
fn hold_and_watch(env: &Env, pod: &Pod<'_>, holding: &str) -> Res<()> {
    let start = Instant::now();
    while start.elapsed() < HOLD {
        let c = pod.get()?;
        ensure!(
            c.status == ContainerStatus::Running,
            "the pod became {} {:.1?} into holding {holding} open through the ingress \
             (keep_warm_seconds 2 must not stop a pod with an active connection)\n{}",
            c.status,
            start.elapsed(),
            env.api.describe(&pod.id)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}

pub fn oom_killed(env: &Env) -> Res<()> {
    let api = &env.api;
    let spec = with(testapp_spec(env, &["hog"]), "memory", json!(32));
    let pod = api.launch(with(spec, "keep_warm_seconds", json!(-1)))?;
    ensure!(
        pod.created.memory_mib == 32,
        "memory 32 was recorded as {} MiB",
        pod.created.memory_mib
    );
    let c = api.wait_terminal(&pod.id, timeouts::START)?;
    ensure!(
        c.status == ContainerStatus::OomKilled,
        "a pod allocating past its 32 MiB limit ended as {} (exit code {:?}, reason {:?}), expected OOM_KILLED\n{}",
        c.status,
        c.exit_code,
        c.reason,
        pod.describe()
    );
    Ok(())
}
