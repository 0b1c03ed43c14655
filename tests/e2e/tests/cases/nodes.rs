//! The server registers its machine as a node: `GET /v1/nodes` and `berth node list` show
//! what it offers, what its pods ask for and its heartbeat; every pod names its node.

use std::time::Duration;

use berth_api::{NodeInfo, NodeList, NodeStatus};
use reqwest::Method;
use serde_json::json;

use super::{testapp_spec, with};
use crate::common::client::{parse_json, Api};
use crate::common::harness::Env;
use crate::common::server::{BRIDGE, NODE_LABEL};
use crate::common::{poll, Res};
use crate::ensure;

/// A heartbeat comes every 5 s; give it two.
const NEXT_HEARTBEAT: Duration = Duration::from_secs(12);

fn nodes(api: &Api) -> Res<Vec<NodeInfo>> {
    let (status, body) = api.send(api.request(Method::GET, "/v1/nodes"), "list nodes")?;
    ensure!(status.is_success(), "GET /v1/nodes: {status} {body}");
    Ok(parse_json::<NodeList>(&body, "node list")?.nodes)
}

pub fn this_machine_is_a_node(env: &Env) -> Res<()> {
    let api = &env.api;
    let listed = nodes(api)?;
    let [node] = listed.as_slice() else {
        return Err(format!("one server should be one node, not {listed:#?}"));
    };
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map_err(|e| format!("hostname: {e}"))?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    let meminfo = std::fs::read_to_string("/proc/meminfo").map_err(|e| e.to_string())?;
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .ok_or("no MemTotal in /proc/meminfo")?;
    ensure!(
        node.id.starts_with("node-")
            && node.hostname == hostname.trim()
            && node.status == NodeStatus::Ready
            && node.cpu_millis == cpus * 1000
            && node.memory_mib == mem_kib / 1024
            && node.runtimes.iter().any(|r| r == "runc")
            && node.labels.get(NODE_LABEL).map(String::as_str) == Some(BRIDGE),
        "the node does not describe this machine ({} CPUs, {} MiB, host {}, label \
         {NODE_LABEL}={BRIDGE}): {node:#?}",
        cpus,
        mem_kib / 1024,
        hostname.trim()
    );

    let pod = api.launch(with(
        with(testapp_spec(env, &["http", "8080"]), "cpu", json!(0.25)),
        "memory",
        json!(96),
    ))?;
    let running = api.wait_running(&pod.id)?;
    ensure!(
        running.node.as_deref() == Some(node.id.as_str()),
        "{} is placed on {:?}, not on the one node {}",
        pod.id,
        running.node,
        node.id
    );
    // Other tests run pods at the same time: what this one asks for is a lower bound.
    let now = nodes(api)?;
    let with_pod = now.first().ok_or("no node after the create")?;
    ensure!(
        with_pod.pods >= 1
            && with_pod.cpu_requested_millis >= 250
            && with_pod.memory_requested_mib >= 96,
        "with {} running (0.25 CPU, 96 MiB) the node counts {} pods, {} millicores, {} MiB",
        pod.id,
        with_pod.pods,
        with_pod.cpu_requested_millis,
        with_pod.memory_requested_mib
    );

    let table = api.cli(&["container", "list"])?;
    ensure!(
        table
            .stdout
            .lines()
            .any(|l| l.contains(&pod.id) && l.contains(&node.id)),
        "container list does not show {} on {}:\n{}",
        pod.id,
        node.id,
        table.show()
    );
    let listing = api.cli(&["node", "list"])?;
    let row = listing
        .stdout
        .lines()
        .find(|l| l.contains(&node.id))
        .unwrap_or_default();
    ensure!(
        listing.status.success()
            && row.contains("READY")
            && row.contains(&format!("/ {cpus} "))
            && row.contains(&format!("{NODE_LABEL}={BRIDGE}")),
        "berth node list has no READY row for {} with {cpus} CPUs and its label:\n{}",
        node.id,
        listing.show()
    );

    let beat = poll(NEXT_HEARTBEAT, Duration::from_millis(500), || {
        nodes(api)
            .ok()?
            .into_iter()
            .find(|n| n.heartbeat_at > node.heartbeat_at)
    });
    ensure!(
        beat.is_some(),
        "the node's heartbeat stayed at {} for {NEXT_HEARTBEAT:?}",
        node.heartbeat_at
    );
    api.stop(&pod.id)?;
    Ok(())
}
