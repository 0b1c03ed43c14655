//! `berth server` refuses, at start and before touching the host, a configuration that would
//! break the host's network; a start that fails later (a port in use) undoes what it made.

use std::fs::File;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_api::ContainerStatus;
use serde_json::json;

use super::{testapp_spec, with};
use crate::common::harness::{link_exists, Env};
use crate::common::server::{server_env, terminate, BRIDGE, POD_SUBNET_V4};
use crate::common::{
    command_output, free_port, indent, loopback, poll, random_hex, tail_file, Context, Res,
};
use crate::ensure;

/// The upper half of the suite's pod subnet.
const OVERLAPPING_SUBNET: &str = "10.214.128.0/17";
/// The second server's bridge; it must never appear.
const OTHER_BRIDGE: &str = "berthtest1";
/// How long a refused server may take to exit.
const EXIT_WITHIN: Duration = Duration::from_secs(10);

/// A second server whose pod subnet overlaps the route of the suite's bridge exits at once
/// with an error naming both, and leaves nothing behind.
pub fn subnet_overlap_refused(env: &Env) -> Res<()> {
    let api = &env.api;
    // The suite's bridge routes its subnet only once a pod has run: keep one running.
    let pod = api.launch(with(
        testapp_spec(env, &["sleep"]),
        "keep_warm_seconds",
        json!(-1),
    ))?;
    api.wait_running(&pod.id)?;
    let routes = command_output("ip", &["-4", "route", "show", "dev", BRIDGE])?;
    ensure!(
        routes.lines().any(|l| l.starts_with(POD_SUBNET_V4)),
        "precondition: with a pod running, the host should route {POD_SUBNET_V4} to {BRIDGE}; \
         `ip -4 route show dev {BRIDGE}` says:\n{}",
        indent(&routes)
    );
    ensure!(
        !link_exists(OTHER_BRIDGE),
        "precondition: the bridge {OTHER_BRIDGE} already exists"
    );

    let dir = second_server_dir(env, "overlap")?;
    let profile = dir.join("profile.json");
    let stderr_log = dir.join("stderr.log");
    let mut child = spawn_second_server(
        env,
        &dir,
        &loopback(free_port()?).to_string(),
        &[
            "--pod-subnet-v4",
            OVERLAPPING_SUBNET,
            "--bridge",
            OTHER_BRIDGE,
        ],
    )?;
    let exited = poll(EXIT_WITHIN, Duration::from_millis(100), || {
        child.try_wait().ok().flatten()
    });
    let started = format!(
        "a second berth server with --pod-subnet-v4 {OVERLAPPING_SUBNET}, which overlaps the \
         host route {POD_SUBNET_V4} on {BRIDGE}"
    );
    let Some(status) = exited else {
        terminate(child, Duration::from_secs(10));
        remove_bridge_if_created();
        return Err(format!(
            "{started}, was still running after {EXIT_WITHIN:?} instead of refusing to start; \
             its stderr:\n{}",
            indent(&tail_file(&stderr_log, 30))
        ));
    };
    let output = tail_file(&stderr_log, 30);
    let bridge_created = remove_bridge_if_created();

    ensure!(
        !status.success(),
        "{started}, exited 0; its stderr:\n{}",
        indent(&output)
    );
    for needle in [OVERLAPPING_SUBNET, "overlaps", POD_SUBNET_V4] {
        ensure!(
            output.contains(needle),
            "{started}, exited ({status}) but its stderr does not say {needle:?}:\n{}",
            indent(&output)
        );
    }
    ensure!(
        !bridge_created,
        "{started}, created the bridge {OTHER_BRIDGE} before exiting ({status})"
    );
    ensure!(
        !profile.exists(),
        "{started}, wrote a client profile {} although it refused to start",
        profile.display()
    );
    // The suite's server and its pod carry on.
    let c = pod.get()?;
    ensure!(
        c.status == ContainerStatus::Running,
        "the suite's pod {} became {} while a second server was refused\n{}",
        pod.id,
        c.status,
        pod.describe()
    );
    Ok(())
}

/// Deletes `OTHER_BRIDGE` if it exists; returns whether it did.
fn remove_bridge_if_created() -> bool {
    if !link_exists(OTHER_BRIDGE) {
        return false;
    }
    if let Err(e) = command_output("ip", &["link", "del", OTHER_BRIDGE]) {
        eprintln!("cleanup: deleting the bridge {OTHER_BRIDGE}: {e}");
    }
    true
}

/// A directory for a second server, under the suite's temporary directory.
fn second_server_dir(env: &Env, purpose: &str) -> Res<std::path::PathBuf> {
    let suite_tmp = env
        .server
        .state_dir
        .parent()
        .ok_or("the server's state directory has no parent")?;
    let dir = suite_tmp.join(format!("{purpose}-server-{}", random_hex(4)));
    std::fs::create_dir_all(&dir).with_ctx(|| format!("create {}", dir.display()))?;
    Ok(dir)
}

/// Starts a second server in `dir` (its profile there, stdout.log and stderr.log beside it)
/// with its API on `api` and `args` added.
fn spawn_second_server(
    env: &Env,
    dir: &std::path::Path,
    api: &str,
    args: &[&str],
) -> Res<std::process::Child> {
    let stdout =
        File::create(dir.join("stdout.log")).ctx("create the second server's stdout log")?;
    let stderr =
        File::create(dir.join("stderr.log")).ctx("create the second server's stderr log")?;
    let mut cmd = Command::new(&env.server.bin);
    server_env(&mut cmd, &dir.join("profile.json"))
        .arg("server")
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(["--api-listen", api])
        .args(["--ingress-listen", &loopback(free_port()?).to_string()])
        .args(["--pod-subnet-v6", "none"])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .with_ctx(|| format!("start a second {} server", env.server.bin.display()))
}

/// Its own bridge and subnet, apart from every other test server's.
const PORT_IN_USE_BRIDGE: &str = "berthtest15";

/// A server whose API port is taken exits with an error saying so, and takes back what it
/// had made by then: its warm networks (namespaces, user-namespace mounts, addresses) and
/// its bridge.
pub fn port_in_use_leaves_nothing(env: &Env) -> Res<()> {
    ensure!(
        !link_exists(PORT_IN_USE_BRIDGE),
        "precondition: the bridge {PORT_IN_USE_BRIDGE} already exists"
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").ctx("bind a port to take")?;
    let api = taken.local_addr().ctx("local_addr")?.to_string();
    let dir = second_server_dir(env, "port-in-use")?;
    let mut child = spawn_second_server(
        env,
        &dir,
        &api,
        &[
            "--pod-subnet-v4",
            "10.230.0.0/16",
            "--bridge",
            PORT_IN_USE_BRIDGE,
        ],
    )?;
    let exited = poll(EXIT_WITHIN, Duration::from_millis(100), || {
        child.try_wait().ok().flatten()
    });
    let stderr = tail_file(&dir.join("stderr.log"), 30);
    let Some(status) = exited else {
        terminate(child, Duration::from_secs(10));
        let _ = command_output("ip", &["link", "del", PORT_IN_USE_BRIDGE]);
        return Err(format!(
            "a server whose API port {api} is taken was still running after {EXIT_WITHIN:?}; \
             its stderr:\n{}",
            indent(&stderr)
        ));
    };
    drop(taken);
    let state = dir.join("state");
    let mounts = crate::common::leaks::Snapshot::mounts_under(&state)?;
    let warm: Vec<String> = std::fs::read_dir(state.join("warm"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let netns = command_output("ip", &["netns", "list"])?;
    let namespaces: Vec<&str> = warm
        .iter()
        .filter_map(|key| {
            netns
                .lines()
                .find(|l| l.starts_with(&format!("berth-{key}")))
        })
        .collect();
    let bridge_left = link_exists(PORT_IN_USE_BRIDGE);
    if bridge_left {
        let _ = command_output("ip", &["link", "del", PORT_IN_USE_BRIDGE]);
    }
    ensure!(
        !status.success() && stderr.contains("Address already in use") && stderr.contains(&api),
        "a server whose API port {api} is taken exited with {status}; its stderr should say \
         the address is in use:\n{}",
        indent(&stderr)
    );
    ensure!(
        mounts.is_empty() && warm.is_empty() && namespaces.is_empty() && !bridge_left,
        "a server that failed to start (API port {api} taken) left behind: mounts {mounts:?}, \
         warm networks {warm:?} (namespaces {namespaces:?}), bridge {PORT_IN_USE_BRIDGE} {}",
        if bridge_left { "present" } else { "gone" }
    );
    Ok(())
}
