//! The `berth` CLI as a user types it.

use berth_api::{Container, ContainerStatus};

use crate::common::client::{created_id, parse_json};
use crate::common::harness::Env;
use crate::common::images::busybox_index_text;
use crate::common::{poll, random_hex, timeouts, Res};
use crate::ensure;

/// `berth run` a busybox httpd, reach it, list it, stop it.
pub fn run_busybox(env: &Env) -> Res<()> {
    let api = &env.api;
    let out = api.cli(&[
        "run",
        "--image",
        &env.images.busybox,
        "--keep-warm-seconds",
        "-1",
    ])?;
    let text = out.combined();
    // Adopt the container before any assertion, so a failure still stops it.
    let id = created_id(&text);
    let _pod = id.as_deref().map(|id| api.adopt(id)).transpose()?;
    ensure!(out.status.success(), "berth run failed:\n{}", out.show());
    for expected in [
        "=> Pulling image",
        "=> Creating container",
        "=> Container created successfully ===> ",
    ] {
        ensure!(
            text.contains(expected),
            "berth run printed no {expected:?} line:\n{}",
            out.show()
        );
    }
    let id = id.ok_or_else(|| format!("no container id after \"===>\":\n{}", out.show()))?;
    let url = text
        .lines()
        .find_map(|l| {
            l.split_once("Container hosted at:")
                .map(|(_, u)| u.trim().to_string())
        })
        .ok_or_else(|| {
            format!(
                "berth run printed no \"✨ Container hosted at: <url>\" line:\n{}",
                out.show()
            )
        })?;
    ensure!(
        text.contains("✨ Container hosted at: "),
        "the URL line lacks its ✨ prefix:\n{}",
        out.show()
    );

    let container = api.get(&id)?;
    ensure!(
        container.status == ContainerStatus::Running,
        "berth run exited 0 but {id} is {}:\n{}",
        container.status,
        api.describe(&id)
    );
    ensure!(
        container
            .urls
            .iter()
            .any(|u| u.trim_end_matches('/') == url.trim_end_matches('/')),
        "berth run printed URL {url} but the API lists {:?}",
        container.urls
    );
    ensure!(
        container.keep_warm_seconds == -1,
        "keep_warm_seconds is {}, not -1",
        container.keep_warm_seconds
    );

    let body = api
        .wait_http_ok(&url, timeouts::HTTP_READY)
        .map_err(|e| format!("{e}\n{}", api.describe(&id)))?;
    ensure!(
        body.contains(busybox_index_text()),
        "GET {url} answered {body:?}, expected the busybox index page"
    );

    let listed = cli_list(env, false)?;
    let entry = listed.iter().find(|c| c.id == id);
    ensure!(
        entry.is_some_and(|c| c.status == ContainerStatus::Running),
        "berth container list --format json shows {id} as {:?}",
        entry.map(|c| c.status)
    );

    let out = api.cli(&["container", "stop", &id])?;
    ensure!(
        out.status.success(),
        "berth container stop {id} failed:\n{}",
        out.show()
    );
    // busybox httpd ignores SIGTERM as PID 1, so this also exercises the SIGKILL escalation.
    let gone = poll(
        timeouts::STOP,
        std::time::Duration::from_millis(500),
        || {
            cli_list(env, false)
                .ok()
                .filter(|l| l.iter().all(|c| c.id != id))
        },
    );
    ensure!(
        gone.is_some(),
        "{id} is still in `berth container list` after stop:\n{}",
        api.describe(&id)
    );

    let container = api.wait_terminal(&id, timeouts::STOP)?;
    ensure!(
        container.status == ContainerStatus::Stopped,
        "after berth container stop, {id} is {} (reason {:?}), expected STOPPED",
        container.status,
        container.reason
    );
    let all = cli_list(env, true)?;
    ensure!(
        all.iter()
            .any(|c| c.id == id && c.status == ContainerStatus::Stopped),
        "berth container list --all does not show {id} as STOPPED"
    );
    Ok(())
}

fn cli_list(env: &Env, all: bool) -> Res<Vec<Container>> {
    let mut args = vec!["container", "list", "--format", "json"];
    if all {
        args.insert(2, "--all");
    }
    let out = env.api.cli(&args)?;
    ensure!(
        out.status.success(),
        "berth {} failed:\n{}",
        args.join(" "),
        out.show()
    );
    parse_json(&out.stdout, "a JSON array of containers")
}

/// `berth run` of an image that cannot be pulled fails with an error naming it.
pub fn run_failure_reports_error(env: &Env) -> Res<()> {
    let tag = format!("missing-{}", random_hex(4));
    let image = format!("{}/testapp:{tag}", env.registry.host());
    let out = env.api.cli(&["run", "--image", &image])?;
    ensure!(
        !out.status.success(),
        "berth run of the missing image {image} exited 0:\n{}",
        out.show()
    );
    let text = out.combined();
    ensure!(
        text.contains("error:"),
        "berth run failed without an \"error:\" message:\n{}",
        out.show()
    );
    ensure!(
        text.contains(&tag),
        "berth run's error does not name the image {image}:\n{}",
        out.show()
    );
    Ok(())
}

/// The profile the server wrote is enough for the CLI: no gateway or token in the environment.
pub fn profile_without_env(env: &Env) -> Res<()> {
    let out = env
        .api
        .cli_profile_only(&["container", "list", "--format", "json"])?;
    ensure!(
        out.status.success(),
        "berth container list with only BERTH_PROFILE={} failed:\n{}",
        env.server.profile.display(),
        out.show()
    );
    let _: Vec<Container> = parse_json(&out.stdout, "a JSON array of containers")?;
    ensure!(
        env.server.gateway.trim_end_matches('/') == env.api.base,
        "the profile's gateway is {:?}, but the API listens on {}",
        env.server.gateway,
        env.api.base
    );
    Ok(())
}

/// Pods whose entrypoint ignores SIGTERM (the init passes it on; the shell drops it).
const IGNORES_SIGTERM: &str = "trap '' TERM; while :; do sleep 1; done";

pub fn stop_many_at_once_under_runc(env: &Env) -> Res<()> {
    stop_many_at_once(env, "runc")
}

pub fn stop_many_at_once_under_gvisor(env: &Env) -> Res<()> {
    stop_many_at_once(env, "gvisor")
}

/// `berth container stop --image` stops many pods at once: 20 pods that ignore SIGTERM take
/// about one grace period, not twenty, and each one's end says it needed SIGKILL. The image
/// is this test's own, so the filter picks its pods and nobody else's.
fn stop_many_at_once(env: &Env, runtime: &str) -> Res<()> {
    const PODS: usize = 20;
    const GRACE: u64 = 10;
    let api = &env.api;
    let tag = format!("{runtime}-{}", crate::common::random_hex(4));
    let image = crate::common::images::busybox_with_page(&format!("stop many {tag}"))?;
    env.registry.push("stop-many", &tag, &image)?;
    let reference = format!("{}/stop-many:{tag}", env.registry.host());
    let mut pods = Vec::new();
    for i in 0..PODS {
        pods.push(api.launch(serde_json::json!({
            "image": reference,
            "entrypoint": ["/bin/sh", "-c", IGNORES_SIGTERM],
            "runtime": runtime,
            // A name of its own: pods of one stub replace each other.
            "env": { format!("STOP_MANY_{i}"): "1" },
        }))?);
    }
    for pod in &pods {
        api.wait_running(&pod.id)?;
    }
    let grace = GRACE.to_string();
    let started = std::time::Instant::now();
    let out = api.cli(&[
        "container",
        "stop",
        "--image",
        &reference,
        "--grace",
        &grace,
    ])?;
    let took = started.elapsed();
    println!(
        "cli: {PODS} {runtime} pods ignoring SIGTERM stopped in {took:.1?} with a {GRACE} s grace"
    );
    let want = format!("stopped by request (SIGTERM, then SIGKILL after {GRACE} s grace)");
    let missing: Vec<&str> = pods
        .iter()
        .map(|p| p.id.as_str())
        .filter(|id| {
            !out.stdout
                .contains(&format!("Stopped {id} (STOPPED: {want})"))
        })
        .collect();
    ensure!(
        out.status.success() && missing.is_empty(),
        "`berth container stop --image` should print each of the {PODS} pods as stopped with          \"{want}\"; missing {missing:?}:\n{}",
        out.combined()
    );
    ensure!(
        took < std::time::Duration::from_secs(3 * GRACE),
        "{PODS} stops took {took:?}: more than three {GRACE} s grace periods, as if one after \
         another"
    );
    let out = api.cli(&["container", "stop", "--image", &reference])?;
    ensure!(
        out.status.success() && out.stdout.trim() == "No containers to stop",
        "a second stop --image should find nothing left: {}",
        out.combined()
    );
    Ok(())
}

/// `berth doctor` passes on the machine the suite runs on, and names what is wrong when a
/// flag points it at a host it would fail on: no CNI plugins, and a pod subnet that a route
/// of the host (the suite server's own bridge) already covers.
pub fn doctor_checks_the_host(env: &Env) -> Res<()> {
    let api = &env.api;
    let out = api.cli(&[
        "doctor",
        "--state-dir",
        &env.server.state_dir.to_string_lossy(),
    ])?;
    ensure!(
        out.status.success(),
        "berth doctor failed here:\n{}",
        out.show()
    );
    for name in [
        "runc",
        "CNI plugins",
        "cgroups",
        "overlayfs",
        "iptables",
        "free disk",
    ] {
        ensure!(
            out.stdout
                .lines()
                .any(|l| l.starts_with("pass") && l.contains(name)),
            "berth doctor has no passing {name} line:\n{}",
            out.show()
        );
    }

    let empty = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    let out = api.cli(&[
        "doctor",
        "--cni-bin-dir",
        &empty.path().to_string_lossy(),
        "--pod-subnet-v4",
        env.server.network.subnet_v4,
        "--pod-subnet-v6",
        "none",
        "--bridge",
        "berthdoctor0",
    ])?;
    ensure!(
        !out.status.success(),
        "berth doctor with no CNI plugins passed:\n{}",
        out.show()
    );
    let failing: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("fail"))
        .collect();
    ensure!(
        failing.len() == 2
            && failing
                .iter()
                .any(|l| l.contains("CNI plugins") && l.contains("containernetworking-plugins"))
            && failing
                .iter()
                .any(|l| l.contains("pod subnets") && l.contains(env.server.network.bridge)),
        "berth doctor should fail exactly the CNI and subnet checks, saying what to do:\n{}",
        out.show()
    );
    ensure!(
        out.stderr.contains("2 of"),
        "berth doctor's error should count the failed checks:\n{}",
        out.show()
    );
    Ok(())
}
