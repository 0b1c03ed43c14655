//! PID 1 and stopping, under each runtime: an init (tini) runs as the pod's PID 1 by
//! default, passes the stop signal on to an entrypoint that ignores it as PID 1 and reaps
//! orphaned processes; the signal a stop sends is the pod's, else the image's STOPSIGNAL;
//! and the recorded end names the signals it took. Each case also runs the same pod without
//! the init (or with the other signal), so what it checks is shown to make a difference.

use std::time::{Duration, Instant};

use berth_api::Container;
use serde_json::{json, Value};

use crate::common::client::Api;
use crate::common::harness::Env;
use crate::common::images::{EXIT_ON_SIGINT, EXIT_ON_SIGTERM};
use crate::common::{indent, poll, timeouts, Res};
use crate::ensure;

/// Where berth mounts the init in a pod.
const INIT_PATH: &str = "/run/berth-init";

/// `sh -c script` in the running pod; its stdout.
fn exec(api: &Api, id: &str, script: &str) -> Res<String> {
    let out = api.cli(&["container", "exec", id, "--", "sh", "-c", script])?;
    ensure!(
        out.status.success(),
        "`{script}` in {id} failed:\n{}",
        out.show()
    );
    Ok(out.stdout)
}

/// Stops the pod through the API and waits for its end; also how long that took.
fn stop_and_wait(api: &Api, id: &str) -> Res<(Container, Duration)> {
    let started = Instant::now();
    api.stop(id)?;
    let ended = api.wait_terminal(id, timeouts::STOP)?;
    Ok((ended, started.elapsed()))
}

/// The busybox image's own command (httpd, which as PID 1 ignores SIGTERM), with or without
/// the init.
fn httpd_spec(env: &Env, runtime: &str, init: bool, grace: u64) -> Value {
    json!({
        "image": env.images.busybox,
        "ports": [8080],
        "runtime": runtime,
        "init": init,
        "stop_grace_seconds": grace,
        // A stub of its own per case, so no other test's pod replaces it.
        "env": {"PID1_HTTPD": runtime},
    })
}

/// With the init, busybox httpd (the image's command) stops on SIGTERM at once; without it,
/// under runc, httpd as PID 1 ignores SIGTERM and only SIGKILL ends it.
fn httpd_stops_on_sigterm(env: &Env, runtime: &str) -> Res<()> {
    let api = &env.api;
    let grace = 30;
    let pod = api.launch(httpd_spec(env, runtime, true, grace))?;
    let running = api.wait_running(&pod.id)?;
    ensure!(
        running.init && running.stop_signal.as_deref() == Some("SIGTERM"),
        "a pod should run with an init and stop with SIGTERM by default; it shows init {} and \
         stop_signal {:?}",
        running.init,
        running.stop_signal
    );
    pod.wait_http_ok(8080, "/")?;
    let cmdline = exec(api, &pod.id, "tr '\\0' ' ' < /proc/1/cmdline")?;
    ensure!(
        cmdline.starts_with(INIT_PATH) && cmdline.contains("httpd"),
        "PID 1 of the pod under {runtime} should be the init running httpd; its command line \
         is {cmdline:?}"
    );
    let (ended, took) = stop_and_wait(api, &pod.id)?;
    println!("{runtime}: busybox httpd under the init stopped in {took:.1?} (grace {grace} s)");
    ensure!(
        ended.reason.as_deref() == Some("stopped by request (SIGTERM)")
            && ended.exit_code == Some(128 + 15),
        "under {runtime} the init should pass SIGTERM on to httpd, which ends on it (exit code \
         143), well inside its {grace} s grace; it ended with exit code {:?}: {:?}",
        ended.exit_code,
        ended.reason
    );

    // Without the init, under runc: httpd is PID 1, and the kernel drops the SIGTERM it has
    // no handler for. (gVisor's Sentry delivers a signal from the runtime to PID 1 whatever
    // its handlers, so there httpd would end on SIGTERM without the init too.)
    if runtime != "runc" {
        return Ok(());
    }
    let pod = api.launch(httpd_spec(env, runtime, false, 1))?;
    let running = api.wait_running(&pod.id)?;
    ensure!(!running.init, "init: false should show on the container");
    pod.wait_http_ok(8080, "/")?;
    let (ended, _) = stop_and_wait(api, &pod.id)?;
    ensure!(
        ended.reason.as_deref()
            == Some("stopped by request (SIGTERM, then SIGKILL after 1 s grace)"),
        "without the init, httpd as PID 1 under {runtime} ignores SIGTERM and should need \
         SIGKILL after its 1 s grace; it ended: {:?}",
        ended.reason
    );
    Ok(())
}

pub fn httpd_stops_on_sigterm_under_runc(env: &Env) -> Res<()> {
    httpd_stops_on_sigterm(env, "runc")
}

pub fn httpd_stops_on_sigterm_under_gvisor(env: &Env) -> Res<()> {
    httpd_stops_on_sigterm(env, "gvisor")
}

/// The states of the pod's processes, one `(command, state letter)` each, from /proc.
fn processes(api: &Api, id: &str) -> Res<Vec<(String, char)>> {
    let out = exec(
        api,
        id,
        "for f in /proc/[0-9]*/stat; do read -r line < $f && echo \"$line\"; done",
    )?;
    Ok(out
        .lines()
        .filter_map(|line| {
            // `pid (comm) S ...`: the command may hold spaces and parentheses.
            let open = line.find('(')?;
            let close = line.rfind(')')?;
            let state = line[close + 1..].trim_start().chars().next()?;
            Some((line[open + 1..close].to_string(), state))
        })
        .collect())
}

/// An entrypoint that double-forks three short-lived children (each orphaned at once, so
/// PID 1 inherits it) and then becomes a `sleep` that never waits for anything.
const ORPHANS: &str = "for i in 1 2 3; do (sleep 0.1 &); done; exec sleep 3600";

/// With the init as PID 1 the orphans are reaped when they exit; without it they stay
/// zombies, since the entrypoint in PID 1's place never waits for them.
fn orphans_are_reaped(env: &Env, runtime: &str) -> Res<()> {
    let api = &env.api;
    let spec = |init: bool| {
        json!({
            "image": env.images.busybox,
            "entrypoint": ["/bin/sh", "-c", ORPHANS],
            "runtime": runtime,
            "init": init,
            "env": {"PID1_ORPHANS": runtime},
        })
    };
    let pod = api.launch(spec(true))?;
    api.wait_running(&pod.id)?;
    // Once only the main `sleep` is left, every orphan has exited and been reaped.
    let mut seen = Vec::new();
    let reaped = poll(Duration::from_secs(15), Duration::from_millis(250), || {
        seen = processes(api, &pod.id).unwrap_or_default();
        let sleeps = seen.iter().filter(|(comm, _)| comm == "sleep").count();
        (sleeps == 1 && !seen.iter().any(|(_, state)| *state == 'Z')).then_some(())
    });
    ensure!(
        reaped.is_some(),
        "with the init under {runtime}, the orphans of a double fork should be reaped once \
         they exit; the pod's processes (command, state) are still {seen:?}"
    );

    let pod = api.launch(spec(false))?;
    api.wait_running(&pod.id)?;
    let zombies = poll(Duration::from_secs(15), Duration::from_millis(250), || {
        seen = processes(api, &pod.id).unwrap_or_default();
        let zombies = seen.iter().filter(|(_, state)| *state == 'Z').count();
        (zombies == 3).then_some(())
    });
    ensure!(
        zombies.is_some(),
        "without the init under {runtime} the three orphans should stay zombies (nothing in \
         the pod waits for them), which shows the check above can fail; the pod's processes \
         are {seen:?}"
    );
    Ok(())
}

pub fn orphans_reaped_under_runc(env: &Env) -> Res<()> {
    orphans_are_reaped(env, "runc")
}

pub fn orphans_reaped_under_gvisor(env: &Env) -> Res<()> {
    orphans_are_reaped(env, "gvisor")
}

/// An image with `STOPSIGNAL SIGINT` gets SIGINT when stopped (its entrypoint says so with
/// its exit code); a pod's own `stop_signal` wins over the image's.
fn image_stop_signal(env: &Env, runtime: &str) -> Res<()> {
    let api = &env.api;
    for (stop_signal, name, code) in [
        (None, "SIGINT", EXIT_ON_SIGINT),
        (Some("term"), "SIGTERM", EXIT_ON_SIGTERM),
    ] {
        let mut spec = json!({
            "image": env.images.stop_signal,
            "runtime": runtime,
            "stop_grace_seconds": 20,
        });
        if let Some(signal) = stop_signal {
            spec["stop_signal"] = json!(signal);
        }
        let pod = api.launch(spec)?;
        let running = api.wait_running(&pod.id)?;
        ensure!(
            running.stop_signal.as_deref() == Some(name),
            "under {runtime}, with stop_signal {stop_signal:?} on the pod and STOPSIGNAL SIGINT \
             in the image, the container should show stop_signal {name}; it shows {:?}",
            running.stop_signal
        );
        // Its traps are set once it says so; a signal before that would end it by default.
        let mut log = String::new();
        let ready = poll(Duration::from_secs(15), Duration::from_millis(100), || {
            log = api.logs(&pod.id).unwrap_or_default();
            log.contains("waiting for a signal").then_some(())
        });
        ensure!(
            ready.is_some(),
            "the stop-signal pod under {runtime} never logged that it waits:\n{}",
            indent(&log)
        );
        let (ended, _) = stop_and_wait(api, &pod.id)?;
        let reason = format!("stopped by request ({name})");
        ensure!(
            ended.exit_code == Some(code) && ended.reason.as_deref() == Some(reason.as_str()),
            "under {runtime} the pod should have got {name} and exited {code}; it ended with \
             exit code {:?}: {:?}\n{}",
            ended.exit_code,
            ended.reason,
            pod.describe()
        );
    }
    Ok(())
}

pub fn stop_signal_under_runc(env: &Env) -> Res<()> {
    image_stop_signal(env, "runc")
}

pub fn stop_signal_under_gvisor(env: &Env) -> Res<()> {
    image_stop_signal(env, "gvisor")
}
