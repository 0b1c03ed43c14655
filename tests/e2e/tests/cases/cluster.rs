//! Workers join a server: a token from `berth server join-token`, `berth worker --join` on
//! another host (a network namespace of the test's own, reaching the server's node port
//! over a veth pair), mutual TLS from then on, and `berth node list` showing the worker
//! ready, then unreachable when it dies, then ready again under the same id when it comes
//! back without a token, unreachable while partitioned and ready again when that heals, and
//! turned away once its node is deleted. With the server taking no pods (`--no-pods`), a
//! pod lands on the worker, pulls there (from a registry the worker's namespace reaches),
//! answers through the server's one ingress (tunnelled through the worker's agent port),
//! keeps running and answering across a `kill -9` of the worker, and stops on request.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use berth_api::{ContainerStatus, NodeInfo, NodeList, NodeStatus};
use reqwest::Method;

use super::restart::{shut_down, with_cleanup};
use super::testapp_spec;
use crate::common::client::{parse_json, Api};
use crate::common::harness::{own_server_dir, Env};
use crate::common::server::{berth_bin, terminate, PodNetwork, Server};
use crate::common::{command_output, free_port, indent, poll, random_hex, Context, Res};
use crate::ensure;

const NETWORK: PodNetwork = PodNetwork {
    bridge: "berthtest16",
    subnet_v4: "10.232.0.0/16",
    subnet_v6: None,
};
/// The worker's own pod network, inside its namespace.
const WORKER_BRIDGE: &str = "berthw16";
const WORKER_SUBNET: &str = "10.233.0.0/16";
/// Three missed heartbeats (5 s each) and a margin.
const UNREACHABLE_WITHIN: Duration = Duration::from_secs(30);
const READY_WITHIN: Duration = Duration::from_secs(20);
/// A heartbeat caught in the partition times out after 10 s before the next one is sent.
const HEAL_WITHIN: Duration = Duration::from_secs(30);
/// A worker silent for 20 s has its pods LOST, looked at every 5 s.
const LOST_WITHIN: Duration = Duration::from_secs(30);

/// Another machine: a network namespace whose one link leads to the host.
pub(super) struct WorkerHost {
    netns: String,
    /// The host's end of the link (the control plane's address for this worker) and the
    /// worker's: `10.231.0.<4n+1>` and `<4n+2>`, a /30 each.
    pub outside: std::net::Ipv4Addr,
    pub inside: std::net::Ipv4Addr,
    /// The node flags every start of the worker gets: its pod network, and where it pulls.
    pub node_args: Vec<String>,
}

impl WorkerHost {
    /// The `n`th worker's host (0 to 62); its default route leads to the host, so it
    /// reaches the host's addresses on the other links too.
    pub fn create(n: u8) -> Res<WorkerHost> {
        let tag = random_hex(3);
        let host = WorkerHost {
            netns: format!("berthe2e-worker-{tag}"),
            outside: std::net::Ipv4Addr::new(10, 231, 0, 4 * n + 1),
            inside: std::net::Ipv4Addr::new(10, 231, 0, 4 * n + 2),
            node_args: Vec::new(),
        };
        let (outside, inside) = (format!("bwh{tag}"), format!("bww{tag}"));
        command_output("ip", &["netns", "add", &host.netns])?;
        command_output(
            "ip",
            &[
                "link",
                "add",
                &outside,
                "type",
                "veth",
                "peer",
                "name",
                &inside,
                "netns",
                &host.netns,
            ],
        )?;
        command_output(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/30", host.outside),
                "dev",
                &outside,
            ],
        )?;
        command_output("ip", &["link", "set", &outside, "up"])?;
        let v4 = format!("{}/30", host.inside);
        let gateway = host.outside.to_string();
        for args in [
            ["addr", "add", v4.as_str(), "dev", inside.as_str()].as_slice(),
            &["link", "set", inside.as_str(), "up"],
            &["link", "set", "lo", "up"],
            &["route", "add", "default", "via", gateway.as_str()],
        ] {
            let mut all = vec!["netns", "exec", host.netns.as_str(), "ip"];
            all.extend_from_slice(args);
            command_output("ip", &all)?;
        }
        Ok(host)
    }

    /// `berth worker` in the namespace's network only (`nsenter`, not `ip netns exec`,
    /// whose private mount namespace would hide the pods' mounts from the worker's next
    /// start, as another machine's would not be).
    pub fn worker(&self, state_dir: &Path, args: &[&str]) -> Res<Command> {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/run/netns/{}", self.netns))
            .arg("--")
            .arg(berth_bin()?)
            .arg("worker")
            .arg("--state-dir")
            .arg(state_dir)
            .args(&self.node_args)
            .args(args)
            .env_remove("BERTH_JOIN_TOKEN")
            .stdin(Stdio::null());
        Ok(cmd)
    }

    /// Runs a worker that should refuse to start; its output.
    fn refused(&self, state_dir: &Path, args: &[&str]) -> Res<String> {
        let out: Output = self
            .worker(state_dir, args)?
            .output()
            .ctx("run berth worker")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(
            !out.status.success(),
            "berth worker {args:?} should have failed:\n{}",
            indent(&text)
        );
        Ok(text)
    }

    /// `iptables ACTION RULE...` in the worker's namespace (gone with it).
    fn iptables(&self, action: &str, rule: &[&str]) -> Res<()> {
        let mut all = vec![
            "netns",
            "exec",
            self.netns.as_str(),
            "iptables",
            "-w",
            action,
        ];
        all.extend_from_slice(rule);
        command_output("ip", &all).map(drop)
    }

    pub fn spawn(&self, state_dir: &Path, args: &[&str], log: &Path) -> Res<Child> {
        let out = std::fs::File::create(log).ctx("worker log")?;
        let err = out.try_clone().ctx("worker log")?;
        self.worker(state_dir, args)?
            .stdout(out)
            .stderr(err)
            .spawn()
            .ctx("start berth worker")
    }
}

impl Drop for WorkerHost {
    fn drop(&mut self) {
        // The veth pair goes with the namespace.
        if let Err(e) = command_output("ip", &["netns", "del", &self.netns]) {
            eprintln!("cleanup: deleting {}: {e}", self.netns);
        }
    }
}

/// A worker's node flags: its own pod network in its namespace, no warm networks (a
/// worker killed in a test would leave them), its agent on its own address, and pulls
/// through `mirror`, a registry serving the suite's images where the namespace reaches.
pub(super) fn worker_node_args(
    env: &Env,
    host: &WorkerHost,
    mirror: &crate::common::registry::Registry,
) -> Res<Vec<String>> {
    Ok([
        "--warm-networks",
        "0",
        "--bridge",
        WORKER_BRIDGE,
        "--pod-subnet-v4",
        WORKER_SUBNET,
        "--pod-subnet-v6",
        "none",
        "--agent-listen",
        &format!("{}:{}", host.inside, free_port()?),
        "--insecure-registry",
        &mirror.host(),
        "--registry-mirror",
        &format!("{}={}", env.registry.host(), mirror.host()),
    ]
    .map(String::from)
    .to_vec())
}

/// The processes in the worker's namespace: the worker and its pods' shims.
impl WorkerHost {
    pub fn kill_all(&self) -> Res<usize> {
        let pids = command_output("ip", &["netns", "pids", &self.netns])?;
        let pids: Vec<&str> = pids.split_whitespace().collect();
        for pid in &pids {
            let _ = command_output("kill", &["-9", pid]);
        }
        Ok(pids.len())
    }
}

pub(super) fn nodes(api: &Api) -> Res<Vec<NodeInfo>> {
    let (status, body) = api.send(api.request(Method::GET, "/v1/nodes"), "list nodes")?;
    ensure!(status.is_success(), "GET /v1/nodes: {status} {body}");
    Ok(parse_json::<NodeList>(&body, "node list")?.nodes)
}

pub(super) fn wait_status(
    api: &Api,
    id: &str,
    status: NodeStatus,
    within: Duration,
) -> Res<NodeInfo> {
    poll(within, Duration::from_millis(500), || {
        nodes(api)
            .ok()?
            .into_iter()
            .find(|n| n.id == id && n.status == status)
    })
    .ok_or_else(|| {
        format!(
            "node {id} was not {status} within {within:?}: {:#?}",
            nodes(api)
        )
    })
}

pub fn a_worker_joins_over_mutual_tls(env: &Env) -> Res<()> {
    let mut host = WorkerHost::create(0)?;
    let dir = own_server_dir(env, &NETWORK, "cluster")?;
    // The worker pulls from the suite's images through a registry on the host side of its
    // link, as a mirror of the one image references name.
    let mirror = env
        .registry
        .mirror_on(&dir.join("mirror"), host.outside.into())?;
    host.node_args = worker_node_args(env, &host, &mirror)?;
    let node_port = format!("{}:{}", host.outside, free_port()?);
    let server = Server::start_with_args(
        &dir,
        &env.registry.host(),
        NETWORK,
        &[
            "--node-listen".to_string(),
            node_port.clone(),
            "--no-pods".to_string(),
        ],
    )?;
    let api = Api::new(&server)?;
    let outcome = join_and_heartbeat(env, &host, &dir, &api, &node_port);
    let cleanup = shut_down(&server, &api, &NETWORK);
    drop(host);
    with_cleanup(&server, outcome, cleanup)
}

/// `berth server join-token --ttl TTL`: the token (its last line) and all it printed.
pub(super) fn mint(api: &Api, ttl: &str) -> Res<(String, String)> {
    let minted = api.cli(&["server", "join-token", "--ttl", ttl])?;
    ensure!(minted.status.success(), "join-token:\n{}", minted.show());
    let token = minted.stdout.lines().last().unwrap_or_default().trim();
    Ok((token.to_string(), minted.stdout.clone()))
}

fn join_and_heartbeat(
    env: &Env,
    host: &WorkerHost,
    dir: &Path,
    api: &Api,
    node_port: &str,
) -> Res<()> {
    let (token, printed) = mint(api, "10m")?;
    ensure!(
        printed.contains(&format!("berth worker --join {node_port} --token {token}")),
        "join-token printed no join command for {node_port}:\n{}",
        indent(&printed)
    );
    let state = dir.join("worker-state");
    let credentials = state.join("cluster-credentials.json");

    // A mistyped secret, a token naming another CA, an expired token: refused, nothing kept.
    let parts: Vec<&str> = token.split('.').collect();
    ensure!(parts.len() == 4, "the token {token:?} is not four parts");
    let flip = |s: &str| s.chars().rev().collect::<String>();
    let wrong_secret = format!("{}.{}.{}.{}", parts[0], parts[1], flip(parts[2]), parts[3]);
    let wrong_ca = format!("{}.{}.{}.{}", parts[0], parts[1], parts[2], flip(parts[3]));
    let (expired, _) = mint(api, "1")?;
    std::thread::sleep(Duration::from_millis(2100));
    for (bad, expect) in [
        (wrong_secret.as_str(), "not one this control plane minted"),
        (wrong_ca.as_str(), "CA is not the one the join token names"),
        (expired.as_str(), "expired"),
        ("berth1.nope", "not berth1."),
    ] {
        let said = host.refused(&state, &["--join", node_port, "--token", bad])?;
        ensure!(
            said.contains(expect),
            "a worker with the token {bad:?} should be told {expect:?}:\n{}",
            indent(&said)
        );
        ensure!(
            !credentials.exists(),
            "a refused join left {}",
            credentials.display()
        );
    }
    let said = host.refused(&state, &[])?;
    ensure!(
        said.contains("has not joined a server yet"),
        "a worker with no token and no credentials:\n{}",
        indent(&said)
    );

    // Without a certificate the node routes are closed.
    let anonymous = reqwest::blocking::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .build()
        .ctx("client")?;
    let refused = anonymous
        .post(format!("https://{node_port}/v1/cluster/heartbeat"))
        .json(&serde_json::json!({}))
        .send()
        .ctx("anonymous heartbeat")?;
    ensure!(
        refused.status() == reqwest::StatusCode::UNAUTHORIZED,
        "a heartbeat without a certificate got {}",
        refused.status()
    );

    let log = dir.join("worker.log");
    let args = [
        "--join",
        node_port,
        "--token",
        &token,
        "--node-label",
        "pool=edge",
    ];
    let worker = host.spawn(&state, &args, &log)?;
    let mut worker = KillOnDrop(Some(worker));
    let joined = poll(READY_WITHIN, Duration::from_millis(300), || {
        let text = std::fs::read_to_string(&credentials).ok()?;
        let saved: serde_json::Value = serde_json::from_str(&text).ok()?;
        saved["node_id"].as_str().map(str::to_string)
    });
    let Some(node_id) = joined else {
        return Err(format!(
            "the worker did not join within {READY_WITHIN:?}:\n{}",
            indent(&std::fs::read_to_string(&log).unwrap_or_default())
        ));
    };
    let mode = std::fs::metadata(&credentials).ctx("credentials")?;
    ensure!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o077 == 0,
        "the worker's key is readable by others: {:o}",
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions())
    );
    let ready = wait_status(api, &node_id, NodeStatus::Ready, READY_WITHIN).map_err(|e| {
        format!(
            "{e}\nworker log:\n{}",
            indent(&std::fs::read_to_string(&log).unwrap_or_default())
        )
    })?;
    ensure!(
        ready.labels.get("pool").map(String::as_str) == Some("edge")
            && ready.cpu_millis > 0
            && ready.memory_mib > 0
            && nodes(api)?.len() == 2,
        "the joined worker: {ready:#?}\nall nodes: {:#?}",
        nodes(api)
    );
    let listing = api.cli(&["node", "list"])?;
    ensure!(
        listing
            .stdout
            .lines()
            .any(|l| l.contains(&node_id) && l.contains("READY") && l.contains("pool=edge")),
        "berth node list does not show {node_id} READY:\n{}",
        listing.show()
    );

    // The server takes no pods: one lands on the worker, and answers through the ingress.
    let pod = api.launch(testapp_spec(env, &["http", "8080"]))?;
    let running = api.wait_running(&pod.id).map_err(|e| {
        format!(
            "{e}\nworker log:\n{}",
            indent(&std::fs::read_to_string(&log).unwrap_or_default())
        )
    })?;
    ensure!(
        running.node.as_deref() == Some(node_id.as_str()),
        "the pod was placed on {:?}, not the worker {node_id}",
        running.node
    );
    let url = pod.url(8080)?;
    let answers = |when: &str| -> Res<()> {
        let (status, body) = api.ingress_get(&url)?;
        ensure!(
            status.is_success() && body.contains("hello from testapp"),
            "{when}, GET {url} through the ingress answered {status}: {body}"
        );
        Ok(())
    };
    answers("on the worker")?;
    let listed = api.cli(&["container", "list"])?;
    ensure!(
        listed
            .stdout
            .lines()
            .any(|l| l.contains(&pod.id) && l.contains(&node_id)),
        "container list does not show {} on {node_id}:\n{}",
        pod.id,
        listed.show()
    );
    let logs = api.cli(&["container", "logs", &pod.id])?;
    ensure!(
        logs.status.success() && logs.stdout.contains("listening on"),
        "the pod's log, read from the worker:\n{}",
        logs.show()
    );

    // Killed: it stops heartbeating and is shown unreachable; its pod runs on.
    worker.kill();
    wait_status(api, &node_id, NodeStatus::Unreachable, UNREACHABLE_WITHIN)?;

    // Back without a token: the saved certificate is enough, the id is the same, and the
    // pod it left running is adopted and reached again.
    let again_log = dir.join("worker-again.log");
    let again = host.spawn(&state, &[], &again_log)?;
    worker.0 = Some(again);
    let back = wait_status(api, &node_id, NodeStatus::Ready, READY_WITHIN)?;
    ensure!(
        back.heartbeat_at > ready.heartbeat_at && nodes(api)?.len() == 2,
        "the worker came back as {back:#?}; nodes: {:#?}",
        nodes(api)
    );
    poll(READY_WITHIN, Duration::from_millis(300), || {
        answers("after the worker's restart").ok()
    })
    .ok_or_else(|| {
        format!(
            "the pod did not answer after the worker came back: {:?}\nworker log:\n{}",
            answers("after the worker's restart"),
            indent(&std::fs::read_to_string(&again_log).unwrap_or_default())
        )
    })?;
    let stopped = api.stop(&pod.id)?;
    let ended = api.wait_terminal(&pod.id, Duration::from_secs(30))?;
    ensure!(
        ended.status == ContainerStatus::Stopped
            && ended
                .reason
                .as_deref()
                .is_some_and(|r| !r.contains("cleanup failed")),
        "stopping the pod on the worker: {stopped:?} then {ended:?}"
    );
    drop(pod);

    // Partitioned (its packets to the server dropped in its own namespace): unreachable,
    // its pod LOST, then ready again under the same id once the partition heals, still one
    // node, and the pod it kept running through the partition stopped and torn down there.
    let kept = api.launch(testapp_spec(env, &["http", "8080"]))?;
    api.wait_running(&kept.id)?;
    let kept_runtime = state.join("runtime").join("runc").join(&kept.id);
    ensure!(
        kept_runtime.exists(),
        "no runtime state for {} at {}",
        kept.id,
        kept_runtime.display()
    );
    let outside = host.outside.to_string();
    let drop_rule = ["OUTPUT", "-d", outside.as_str(), "-j", "DROP"];
    host.iptables("-A", &drop_rule)?;
    let partitioned = wait_status(api, &node_id, NodeStatus::Unreachable, UNREACHABLE_WITHIN)
        .and_then(|_| {
            poll(LOST_WITHIN, Duration::from_millis(500), || {
                let c = api.get(&kept.id).ok()?;
                (c.status == ContainerStatus::Lost).then_some(c)
            })
            .ok_or_else(|| format!("the partitioned worker's pod: {}", api.describe(&kept.id)))
        });
    host.iptables("-D", &drop_rule)?;
    let lost = partitioned?;
    ensure!(
        lost.reason.as_deref().is_some_and(|r| r.contains(&node_id)),
        "the lost pod's reason does not name its node: {lost:?}"
    );
    wait_status(api, &node_id, NodeStatus::Ready, HEAL_WITHIN)?;
    poll(HEAL_WITHIN, Duration::from_millis(300), || {
        (!kept_runtime.exists()).then_some(())
    })
    .ok_or_else(|| {
        format!(
            "the worker still holds the lost pod {} after the partition healed",
            kept.id
        )
    })?;
    drop(kept);
    let said = std::fs::read_to_string(&again_log).unwrap_or_default();
    ensure!(
        nodes(api)?.len() == 2
            && said.contains("Heartbeat failed")
            && said.contains("Heartbeats reach the server again"),
        "after the partition healed: nodes {:#?}; the worker said:\n{}",
        nodes(api),
        indent(&said)
    );
    let stopped = worker
        .0
        .take()
        .map(|child| terminate(child, Duration::from_secs(5)));
    ensure!(
        stopped.flatten().is_some_and(|s| s.success()),
        "the worker did not stop cleanly on SIGTERM: {stopped:?}"
    );

    // Deleting the node revokes its certificate: the worker, running again, is turned away
    // at its next heartbeat and stops. The server's own node cannot be deleted.
    let own = nodes(api)?
        .into_iter()
        .find(|n| n.id != node_id)
        .ok_or("no node of the server's own")?;
    let refused = api.cli(&["node", "delete", &own.id])?;
    ensure!(
        !refused.status.success() && refused.combined().contains("own node"),
        "deleting the server's own node:\n{}",
        refused.show()
    );
    let last_log = dir.join("worker-last.log");
    worker.0 = Some(host.spawn(&state, &[], &last_log)?);
    let registered = poll(READY_WITHIN, Duration::from_millis(200), || {
        let text = std::fs::read_to_string(&last_log).ok()?;
        text.contains("=> Registered").then_some(())
    });
    ensure!(
        registered.is_some(),
        "the worker did not register again within {READY_WITHIN:?}:\n{}",
        indent(&std::fs::read_to_string(&last_log).unwrap_or_default())
    );
    let deleted = api.cli(&["node", "delete", &node_id])?;
    ensure!(deleted.status.success(), "node delete:\n{}", deleted.show());
    let ended = poll(UNREACHABLE_WITHIN, Duration::from_millis(300), || {
        worker.0.as_mut()?.try_wait().ok().flatten()
    });
    let said = std::fs::read_to_string(&last_log).unwrap_or_default();
    ensure!(
        ended.is_some_and(|s| !s.success()) && said.contains("no longer takes this worker"),
        "after its node was deleted the worker ended {ended:?}, saying:\n{}",
        indent(&said)
    );
    worker.0 = None;
    let left: Vec<String> = nodes(api)?.into_iter().map(|n| n.id).collect();
    ensure!(
        left == [own.id.clone()],
        "after the delete the nodes are {left:?}, not just {}",
        own.id
    );
    Ok(())
}

/// The worker process, killed if the test ends early.
pub(super) struct KillOnDrop(pub Option<Child>);

impl KillOnDrop {
    pub fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.kill();
    }
}
