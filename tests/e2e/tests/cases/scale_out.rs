//! Three hosts on one machine: a control plane that takes no pods, its state in
//! PostgreSQL, and two workers, each a network namespace with its own address. Pods spread
//! over both workers and answer through the one ingress; a deployment whose worker is
//! killed (every process in its namespace) comes back on the other at the next request,
//! and the killed worker, back, tears down what it was running with no duplicate left.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use berth_api::{ContainerStatus, NodeStatus};
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::cluster::{mint, nodes, wait_status, worker_node_args, KillOnDrop, WorkerHost};
use super::restart::{shut_down, with_cleanup};
use super::testapp_spec;
use crate::common::client::{parse_json, Api};
use crate::common::harness::{own_server_dir, Env};
use crate::common::server::{terminate, PodNetwork, Server, DOMAIN};
use crate::common::{free_port, indent, poll, Res};
use crate::ensure;

const NETWORK: PodNetwork = PodNetwork {
    bridge: "berthtest18",
    subnet_v4: "10.235.0.0/16",
    subnet_v6: None,
};
const READY_WITHIN: Duration = Duration::from_secs(30);
/// Three missed heartbeats and a margin.
const UNREACHABLE_WITHIN: Duration = Duration::from_secs(30);
/// LOST after 20 s of silence, looked at every 5 s.
const LOST_WITHIN: Duration = Duration::from_secs(40);
const WAKE_WITHIN: Duration = Duration::from_secs(60);

pub fn pods_spread_over_workers_and_outlive_one(env: &Env) -> Res<()> {
    // The suite's PostgreSQL when it runs on one; else one of this test's own.
    let own_postgres = if crate::common::database::postgres_asked()? {
        None
    } else {
        Some(berth_testpg::TestPostgres::start().map_err(|e| e.to_string())?)
    };
    let mut db_args = Vec::new();
    if let Some(pg) = &own_postgres {
        let url = pg
            .create_database("berth_scale_out")
            .map_err(|e| e.to_string())?;
        db_args = vec!["--database-url".to_string(), url];
    }
    let mut a = WorkerHost::create(1)?;
    let mut b = WorkerHost::create(2)?;
    let dir = own_server_dir(env, &NETWORK, "scale-out")?;
    let mirror = env
        .registry
        .mirror_on(&dir.join("mirror"), a.outside.into())?;
    a.node_args = worker_node_args(env, &a, &mirror)?;
    b.node_args = worker_node_args(env, &b, &mirror)?;
    let node_port = format!("{}:{}", a.outside, free_port()?);
    let mut args = vec![
        "--node-listen".to_string(),
        node_port.clone(),
        "--no-pods".to_string(),
    ];
    args.extend(db_args);
    let server = Server::start_with_args(&dir, &env.registry.host(), NETWORK, &args)?;
    let api = Api::new(&server)?;
    let outcome = spread_and_survive(env, [&a, &b], &dir, &api, &node_port);
    let cleanup = shut_down(&server, &api, &NETWORK);
    drop((a, b));
    drop(own_postgres);
    with_cleanup(&server, outcome, cleanup)
}

struct Worker<'a> {
    host: &'a WorkerHost,
    state: std::path::PathBuf,
    log: std::path::PathBuf,
    node_id: String,
    process: KillOnDrop,
}

fn join(
    host: &WorkerHost,
    dir: &Path,
    name: &str,
    node_port: &str,
    token: &str,
) -> Res<(String, KillOnDrop)> {
    let state = dir.join(format!("{name}-state"));
    let log = dir.join(format!("{name}.log"));
    let child = host.spawn(&state, &["--join", node_port, "--token", token], &log)?;
    let process = KillOnDrop(Some(child));
    let credentials = state.join("cluster-credentials.json");
    let node_id = poll(READY_WITHIN, Duration::from_millis(300), || {
        let text = std::fs::read_to_string(&credentials).ok()?;
        let saved: serde_json::Value = serde_json::from_str(&text).ok()?;
        saved["node_id"].as_str().map(str::to_string)
    })
    .ok_or_else(|| {
        format!(
            "{name} did not join:\n{}",
            indent(&std::fs::read_to_string(&log).unwrap_or_default())
        )
    })?;
    Ok((node_id, process))
}

fn spread_and_survive(
    env: &Env,
    hosts: [&WorkerHost; 2],
    dir: &Path,
    api: &Api,
    node_port: &str,
) -> Res<()> {
    let (token, _) = mint(api, "10m")?;
    let mut workers = Vec::new();
    for (host, name) in hosts.into_iter().zip(["worker-a", "worker-b"]) {
        let (node_id, process) = join(host, dir, name, node_port, &token)?;
        workers.push(Worker {
            host,
            state: dir.join(format!("{name}-state")),
            log: dir.join(format!("{name}.log")),
            node_id,
            process,
        });
    }
    for w in &workers {
        wait_status(api, &w.node_id, NodeStatus::Ready, READY_WITHIN).map_err(|e| {
            format!(
                "{e}\n{} log:\n{}",
                w.node_id,
                indent(&std::fs::read_to_string(&w.log).unwrap_or_default())
            )
        })?;
    }
    ensure!(nodes(api)?.len() == 3, "nodes: {:#?}", nodes(api));

    // Two pods spread over the two workers, each answering through the one ingress.
    let pods = [
        api.launch(testapp_spec(env, &["http", "8080"]))?,
        api.launch(testapp_spec(env, &["http", "8080"]))?,
    ];
    let mut placed = BTreeSet::new();
    for pod in &pods {
        let running = api.wait_running(&pod.id)?;
        placed.insert(running.node.clone().unwrap_or_default());
        let url = pod.url(8080)?;
        let (status, body) = api.ingress_get(&url)?;
        ensure!(
            status.is_success() && body.contains("hello from testapp"),
            "GET {url} of {} on {:?}: {status} {body}",
            pod.id,
            running.node
        );
    }
    let expected: BTreeSet<String> = workers.iter().map(|w| w.node_id.clone()).collect();
    ensure!(
        placed == expected,
        "the two pods went to {placed:?}, not one on each of {expected:?}"
    );

    // A deployment, then its worker killed: every process in the worker's namespace.
    let name = "spread";
    let url = format!("http://{name}-8080.{DOMAIN}:{}/", api.ingress.port());
    let body = json!({
        "name": name,
        "pod": {
            "image": env.images.testapp,
            "entrypoint": ["/usr/local/bin/testapp", "http", "8080"],
            "ports": [8080],
            "keep_warm_seconds": 300,
        }
    });
    let (status, text) = api.send(
        api.request(Method::POST, "/v1/deployments").json(&body),
        "deploy",
    )?;
    ensure!(status == StatusCode::ACCEPTED, "deploy: {status} {text}");
    let deployed: serde_json::Value = parse_json(&text, "deploy answer")?;
    let first = deployed["container"]["id"]
        .as_str()
        .ok_or_else(|| format!("no container in {text}"))?
        .to_string();
    let outcome = survive(api, &mut workers, &first, &url);
    let _ = api.cli(&["deployment", "delete", name]);
    let stopped_all = poll(Duration::from_secs(60), Duration::from_millis(300), || {
        let live = api.list(false).ok()?;
        (!live.iter().any(|c| c.deployment_id.is_some())).then_some(())
    });
    drop(pods);
    for w in &mut workers {
        if let Some(child) = w.process.0.take() {
            terminate(child, Duration::from_secs(5));
        }
    }
    outcome?;
    ensure!(
        stopped_all.is_some(),
        "the deployment's containers did not stop: {:#?}",
        api.list(false)
    );
    Ok(())
}

fn survive(api: &Api, workers: &mut [Worker<'_>], first: &str, url: &str) -> Res<()> {
    let running = api.wait_running(first)?;
    api.wait_http_ok(url, WAKE_WITHIN)?;
    let on = running.node.clone().unwrap_or_default();
    let (dead, alive): (Vec<_>, Vec<_>) = workers.iter_mut().partition(|w| w.node_id == on);
    let (Some(dead), Some(alive)) = (dead.into_iter().next(), alive.into_iter().next()) else {
        return Err(format!("the deployment runs on {on:?}, not on a worker"));
    };
    let killed = dead.host.kill_all()?;
    dead.process.0 = None;
    ensure!(killed > 0, "nothing ran in {}'s namespace", dead.node_id);
    wait_status(
        api,
        &dead.node_id,
        NodeStatus::Unreachable,
        UNREACHABLE_WITHIN,
    )?;
    let lost = poll(LOST_WITHIN, Duration::from_millis(500), || {
        let c = api.get(first).ok()?;
        (c.status == ContainerStatus::Lost).then_some(c)
    });
    ensure!(
        lost.is_some(),
        "the killed worker's pod: {}",
        api.describe(first)
    );

    // The next request starts the deployment again, on the worker that is left.
    api.wait_http_ok(url, WAKE_WITHIN)?;
    let live: Vec<_> = api
        .list(false)?
        .into_iter()
        .filter(|c| c.deployment_id.is_some())
        .collect();
    ensure!(
        live.len() == 1 && live[0].node.as_deref() == Some(alive.node_id.as_str()),
        "after the wake the deployment runs {live:#?}, not one container on {}",
        alive.node_id
    );

    // The killed worker comes back under its id and tears down what it held.
    let back_log = dead.log.with_extension("again.log");
    dead.process.0 = Some(dead.host.spawn(&dead.state, &[], &back_log)?);
    wait_status(api, &dead.node_id, NodeStatus::Ready, READY_WITHIN)?;
    let runtime = dead.state.join("runtime").join("runc");
    let left = || -> Vec<String> {
        std::fs::read_dir(&runtime)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    poll(Duration::from_secs(30), Duration::from_millis(300), || {
        left().is_empty().then_some(())
    })
    .ok_or_else(|| {
        format!(
            "the worker back from the dead still holds {:?}:\n{}",
            left(),
            indent(&std::fs::read_to_string(&back_log).unwrap_or_default())
        )
    })?;
    let live = api
        .list(false)?
        .into_iter()
        .filter(|c| c.deployment_id.is_some())
        .count();
    ensure!(
        live == 1,
        "after the worker came back the deployment has {live} containers"
    );
    Ok(())
}
