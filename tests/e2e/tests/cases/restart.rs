//! A server that dies (SIGKILL: no cleanup) and starts again on the same state adopts the pods
//! that kept running meanwhile; one started with `--stop-pods-on-exit` takes its pods down
//! with it when it stops.
//!
//! Each case runs a server of its own (own state directory, ports, bridge and pod subnet), so
//! killing it disturbs no other test.

use std::time::Duration;

use berth_api::{Container, ContainerStatus};
use serde_json::json;

use super::{testapp_spec, with};
use crate::common::client::{parse_json, Api};
use crate::common::harness::{link_exists, own_server_dir, stop_leftovers, Env};
use crate::common::server::{PodNetwork, Server};
use crate::common::{command_output, indent, poll, random_hex, Res};
use crate::ensure;

/// Apart from the suite's network and from the other test servers' (startup.rs, bench/).
const NETWORK: PodNetwork = PodNetwork {
    bridge: "berthtest2",
    subnet_v4: "10.215.0.0/16",
    subnet_v6: None,
};

/// For the `--stop-pods-on-exit` server.
const STOPPING_NETWORK: PodNetwork = PodNetwork {
    bridge: "berthtest9",
    subnet_v4: "10.223.0.0/16",
    subnet_v6: None,
};

pub fn killed_server_adopts_running_pod(env: &Env) -> Res<()> {
    let dir = own_server_dir(env, &NETWORK, "restart")?;
    let server = Server::start_with(&dir, &env.registry.host(), NETWORK)?;
    let api = Api::new(&server)?;
    let outcome = adopt_after_kill(env, &server, &api);
    let cleanup = shut_down(&server, &api, &NETWORK);
    with_cleanup(&server, outcome, cleanup)
}

fn adopt_after_kill(env: &Env, server: &Server, api: &Api) -> Res<()> {
    let pod = api.launch(with(
        testapp_spec(env, &["http", "8080"]),
        "keep_warm_seconds",
        json!(-1),
    ))?;
    let before = api.wait_running(&pod.id)?;
    let id = pod.id.as_str();
    let before_kill = format!("/before-kill-{}", random_hex(4));
    let body = pod.wait_http_ok(8080, &before_kill)?;
    ensure!(
        body.contains(&format!("BERTH_CONTAINER_ID={id}\n")),
        "{id} did not answer its own URL: {body:?}"
    );
    api.wait_logged(id, &before_kill)?;

    server.kill()?;
    let restarting = std::time::Instant::now();
    server.restart()?;
    let serving = restarting.elapsed();

    // The same container, still RUNNING, started when it was: adopted, not replaced.
    let after = api.get(id)?;
    ensure!(
        after.status == ContainerStatus::Running && after.started_at == before.started_at,
        "after the restart {id} is {} (started_at {:?}, was {:?}), expected the same RUNNING \
         container\n{}",
        after.status,
        after.started_at,
        before.started_at,
        pod.describe()
    );
    // The node keeps its id across the restart, and the pod stays placed on it.
    ensure!(
        before.node.is_some() && after.node == before.node,
        "{id} was on node {:?} before the restart and is on {:?} after it",
        before.node,
        after.node
    );
    let out = api.cli(&["container", "list", "--format", "json"])?;
    ensure!(
        out.status.success(),
        "berth container list after the restart failed:\n{}",
        out.show()
    );
    let listed: Vec<Container> = parse_json(&out.stdout, "a JSON array of containers")?;
    let stub: Vec<&Container> = listed
        .iter()
        .filter(|c| c.stub_id == before.stub_id)
        .collect();
    ensure!(
        stub.len() == 1 && stub[0].id == id && stub[0].status == ContainerStatus::Running,
        "after the restart `berth container list` should show {id} RUNNING as its stub's only \
         container; it shows:\n{}",
        indent(&out.stdout)
    );

    // Its URL answers through the new server's ingress, from the same container.
    let after_restart = format!("/after-restart-{}", random_hex(4));
    let body = pod.wait_http_ok(8080, &after_restart)?;
    eprintln!(
        "restart: after kill -9 the new server answered its API {serving:?} after its start, \
         the pod {:?} after it",
        restarting.elapsed()
    );
    ensure!(
        body.contains(&format!("BERTH_CONTAINER_ID={id}\n")),
        "after the restart {} was answered by another container: {body:?}",
        pod.url(8080)?
    );

    // The log written before the kill is still there, through the API and the CLI; the app
    // started once (it was not restarted); what it writes now is still collected.
    let logs = api.wait_logged(id, &after_restart)?;
    ensure!(
        logs.contains(&before_kill),
        "after the restart the log of {id} lacks the line written before the kill \
         ({before_kill}):\n{}",
        indent(&logs)
    );
    let starts = logs.matches("listening on").count();
    ensure!(
        starts == 1,
        "the app of {id} logged {starts} starts, expected 1 (it must keep running across the \
         restart):\n{}",
        indent(&logs)
    );
    let out = api.cli(&["container", "logs", id])?;
    ensure!(
        out.status.success() && out.stdout.contains(&before_kill),
        "berth container logs {id} after the restart lacks the line written before the kill \
         ({before_kill}):\n{}",
        out.show()
    );
    Ok(())
}

/// A server with `--stop-pods-on-exit` stops its pods when it gets SIGTERM, all at once:
/// three pods that ignore SIGTERM with a 2 s grace take about one grace, and after a restart
/// they are STOPPED (not adopted), each end saying it took SIGKILL.
pub fn server_stops_its_pods_on_exit(env: &Env) -> Res<()> {
    let dir = own_server_dir(env, &STOPPING_NETWORK, "stop-on-exit")?;
    let args = ["--stop-pods-on-exit".to_string()];
    let server = Server::start_with_args(&dir, &env.registry.host(), STOPPING_NETWORK, &args)?;
    let api = Api::new(&server)?;
    let outcome = stop_with_the_server(env, &server, &api);
    let cleanup = shut_down(&server, &api, &STOPPING_NETWORK);
    with_cleanup(&server, outcome, cleanup)
}

fn stop_with_the_server(env: &Env, server: &Server, api: &Api) -> Res<()> {
    let mut pods = Vec::new();
    for i in 0..3 {
        let pod = api.launch(json!({
            "image": env.images.busybox,
            "entrypoint": ["/bin/sh", "-c", "trap '' TERM; while :; do sleep 1; done"],
            "stop_grace_seconds": 2,
            "keep_warm_seconds": -1,
            "env": {format!("STOP_ON_EXIT_{i}"): "1"},
        }))?;
        api.wait_running(&pod.id)?;
        // Held, so the guard does not stop it first: the server is to.
        pods.push(pod);
    }
    let started = std::time::Instant::now();
    server.stop()?;
    println!(
        "restart: the server stopped with its 3 pods (2 s grace each) in {:.1?}",
        started.elapsed()
    );
    server.restart()?;
    for pod in &pods {
        let id = &pod.id;
        let c = api.get(id)?;
        ensure!(
            c.status == ContainerStatus::Stopped
                && c.reason.as_deref()
                    == Some("stopped by request (SIGTERM, then SIGKILL after 2 s grace)"),
            "after a --stop-pods-on-exit server stopped, {id} should be STOPPED with SIGKILL \
             after its 2 s grace; it is {} ({:?})",
            c.status,
            c.reason
        );
    }
    Ok(())
}

/// The test's outcome and its cleanup's as one result, with the server log on failure.
pub(super) fn with_cleanup(server: &Server, outcome: Res<()>, cleanup: Res<()>) -> Res<()> {
    match (outcome, cleanup) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(e), Ok(())) => Err(server.with_log(e)),
        (Ok(()), Err(c)) => Err(server.with_log(c)),
        (Err(e), Err(c)) => Err(server.with_log(format!("{e}\nand cleaning up: {c}"))),
    }
}

/// Stops every pod of the test server and the server itself (starting it again first if it is
/// down, since only a server can stop its pods), and checks that it removed its bridge.
pub(super) fn shut_down(server: &Server, api: &Api, network: &PodNetwork) -> Res<()> {
    if !server.is_running() {
        server.restart()?;
    }
    let stopped = stop_leftovers(api);
    let exited = server.stop();
    let bridge_gone = poll(Duration::from_secs(5), Duration::from_millis(100), || {
        (!link_exists(network.bridge)).then_some(())
    });
    if bridge_gone.is_none() {
        let _ = command_output("ip", &["link", "del", network.bridge]);
    }
    stopped?;
    exited?;
    ensure!(
        bridge_gone.is_some(),
        "the test server left its bridge {} after a clean stop with no pods",
        network.bridge
    );
    Ok(())
}

/// For the hot-restart server.
const HOT_NETWORK: PodNetwork = PodNetwork {
    bridge: "berthtest1",
    subnet_v4: "10.224.0.0/16",
    subnet_v6: None,
};

/// SIGUSR2 hands the server's sockets to a new process while a client loops requests
/// against a pod, each on a new connection: none fails, a websocket opened before the
/// restart still echoes after it (the old process keeps serving it), the pod is the same
/// container, and the old process exits once the websocket closes.
pub fn hot_restart_drops_nothing(env: &Env) -> Res<()> {
    let dir = own_server_dir(env, &HOT_NETWORK, "hot")?;
    let server = Server::start_with(&dir, &env.registry.host(), HOT_NETWORK)?;
    let api = Api::new(&server)?;
    let outcome = hot_restart(env, &server, &api);
    let cleanup = shut_down(&server, &api, &HOT_NETWORK);
    with_cleanup(&server, outcome, cleanup)
}

fn hot_restart(env: &Env, server: &Server, api: &Api) -> Res<()> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use tungstenite::Message;

    use super::ingress::{close, echo};
    use crate::common::client::RawHttp;
    use crate::common::timeouts;

    let pod = api.launch(with(
        testapp_spec(env, &["http", "8080"]),
        "keep_warm_seconds",
        json!(-1),
    ))?;
    let before = api.wait_running(&pod.id)?;
    pod.wait_http_ok(8080, "/")?;
    let url = pod.url(8080)?;
    let mut ws = api.wait_ws_connect(&format!("{url}/ws"), timeouts::HTTP_READY)?;
    echo(&mut ws, Message::text("before the restart"))?;

    // The client: one request per new connection, as fast as it goes.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let client = {
        let (stop, answered, failures) = (stop.clone(), answered.clone(), failures.clone());
        let (ingress, url) = (server.ingress, url.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let path = format!("/loop-{n}");
                let result = RawHttp::connect(ingress, &url).and_then(|mut c| c.get(&path));
                match result {
                    Ok((200, _)) => {
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok((status, body)) => failures
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(format!("GET {path}: {status} {}", body.trim())),
                    Err(e) => failures
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(format!("GET {path}: {e}")),
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let before_restart = answered.load(Ordering::SeqCst);
    let restarted = server.hot_restart();
    let at_handover = answered.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::SeqCst);
    let _ = client.join();
    let (old, new) = restarted?;
    let after = answered.load(Ordering::SeqCst) - at_handover;
    let failures = failures.lock().unwrap_or_else(|p| p.into_inner()).clone();
    eprintln!(
        "hot restart: pid {old} -> {new}; {before_restart} requests before, {} during, \
         {after} in the second after; {} failed",
        at_handover - before_restart,
        failures.len()
    );
    ensure!(
        failures.is_empty(),
        "{} requests through the ingress failed across the hot restart:\n{}",
        failures.len(),
        indent(
            &failures
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        )
    );
    ensure!(
        before_restart > 0 && after > 0,
        "the client got {before_restart} answers before the restart and {after} after: \
         it was not looping"
    );

    // The websocket is still held by the old process, which keeps serving it.
    echo(&mut ws, Message::text("after the restart"))
        .map_err(|e| format!("the websocket opened before the hot restart: {e}"))?;

    // The new process adopted the same container and routes to it.
    let adopted = api.get(&pod.id)?;
    ensure!(
        adopted.status == ContainerStatus::Running && adopted.started_at == before.started_at,
        "after the hot restart {} is {} (started_at {:?}, was {:?}), expected the same \
         RUNNING container",
        pod.id,
        adopted.status,
        adopted.started_at,
        before.started_at
    );
    let body = pod.wait_http_ok(8080, "/after-hot-restart")?;
    ensure!(
        body.contains(&format!("BERTH_CONTAINER_ID={}\n", pod.id)),
        "after the hot restart {url} was answered by another container: {body:?}"
    );

    // The old process has nothing left to serve once the websocket closes.
    close(ws);
    let status = server.wait_old_exited(Duration::from_secs(15))?;
    ensure!(
        status.success(),
        "the old server process exited with {status} after handing over"
    );
    Ok(())
}
