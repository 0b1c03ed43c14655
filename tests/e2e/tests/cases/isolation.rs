//! What a pod must not reach: other pods, and the host's own services.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use berth_api::ContainerStatus;
use serde_json::json;

use super::testapp_spec;
use crate::common::harness::Env;
use crate::common::{command_output, timeouts, Res};
use crate::ensure;

/// The pod's address of one family, read from inside its network namespace.
fn pod_address(id: &str, v6: bool) -> Res<String> {
    let ns = format!("berth-{}", id.trim_start_matches("pod-"));
    let family = if v6 { "-6" } else { "-4" };
    let out = command_output(
        "ip",
        &[
            "netns", "exec", &ns, "ip", "-o", family, "addr", "show", "dev", "eth0", "scope",
            "global",
        ],
    )?;
    out.split_whitespace()
        .skip_while(|w| *w != "inet" && *w != "inet6")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .map(str::to_string)
        .ok_or_else(|| format!("no {family} address in {ns}: {out}"))
}

fn socket(addr: &str, port: u16) -> Res<SocketAddr> {
    let text = if addr.contains(':') {
        format!("[{addr}]:{port}")
    } else {
        format!("{addr}:{port}")
    };
    text.parse().map_err(|e| format!("{text}: {e}"))
}

/// Runs `testapp connect ADDR` in a pod of its own and returns its exit code and output.
fn connect_from_pod(env: &Env, target: SocketAddr) -> Res<(i32, String)> {
    let api = &env.api;
    let target_text = target.to_string();
    let pod = api.launch(testapp_spec(env, &["connect", &target_text]))?;
    let done = api.wait_terminal(&pod.id, timeouts::STOP)?;
    ensure!(
        done.status == ContainerStatus::Exited,
        "the connecting pod ended {}: {}",
        done.status,
        pod.describe()
    );
    Ok((done.exit_code.unwrap_or(-1), api.logs(&pod.id)?))
}

pub fn pods_cannot_reach_each_other(env: &Env) -> Res<()> {
    let api = &env.api;
    let server = api.launch(json!({
        "image": env.images.testapp,
        "ports": [8080],
        "entrypoint": [crate::common::images::TESTAPP_PATH, "http", "8080"],
        "keep_warm_seconds": -1,
    }))?;
    api.wait_running(&server.id)?;
    server.wait_http_ok(8080, "/")?;
    for v6 in [false, true] {
        let target = socket(&pod_address(&server.id, v6)?, 8080)?;
        // The host reaches the pod directly: the address is right and the app listens.
        ensure!(
            TcpStream::connect_timeout(&target, Duration::from_secs(3)).is_ok(),
            "the host cannot reach {target}, so the check below would prove nothing"
        );
        let (code, out) = connect_from_pod(env, target)?;
        ensure!(
            code == 4,
            "another pod reached {target} (exit code {code}): {out}"
        );
    }
    Ok(())
}

pub fn pods_cannot_reach_host_services(env: &Env) -> Res<()> {
    // A host service on every address, as sshd or a database often is.
    let listener = TcpListener::bind("[::]:0").map_err(|e| format!("bind: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    for gateway in [env.server.gateway_v4(), env.server.gateway_v6()] {
        let target = socket(&gateway, port)?;
        let (code, out) = connect_from_pod(env, target)?;
        ensure!(
            code == 4,
            "a pod reached the host service at {target} (exit code {code}): {out}"
        );
        // Checked after a pod ran, when the bridge (and so the gateway address) exists.
        ensure!(
            TcpStream::connect_timeout(&target, Duration::from_secs(3)).is_ok(),
            "the host itself cannot reach its service at {target}, so the check proves nothing"
        );
    }
    Ok(())
}
