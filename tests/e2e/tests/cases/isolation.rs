//! What a pod must not reach: other pods, and the host's own services.
//!
//! A pod that cannot connect anywhere would pass these checks too, so the client pod first
//! (and last) connects to an upstream outside the pod network, the way pods reach the outside
//! world: only when that works do its failures to reach the blocked targets mean anything.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use berth_api::ContainerStatus;
use serde_json::{json, Value};

use super::{testapp_spec, with};
use crate::common::harness::{link_exists, testapp_binary, Env};
use crate::common::{command_output, indent, poll, random_hex, timeouts, Res};
use crate::ensure;

/// The port the upstream and the target pod listen on.
const PORT: u16 = 8080;

/// The pod's address of one family, read from inside its network namespace.
/// The pod's address, read inside the network namespace its bundle names (which need not
/// follow its id: a network made ahead of the create has a name of its own).
fn pod_address(env: &Env, id: &str, v6: bool) -> Res<String> {
    let bundle = env
        .server
        .state_dir
        .join("containers")
        .join(id)
        .join("bundle/config.json");
    let spec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&bundle).map_err(|e| format!("{}: {e}", bundle.display()))?,
    )
    .map_err(|e| format!("{}: {e}", bundle.display()))?;
    let ns = spec["linux"]["namespaces"]
        .as_array()
        .and_then(|all| all.iter().find(|n| n["type"] == "network"))
        .and_then(|n| n["path"].as_str())
        .ok_or_else(|| format!("{} names no network namespace", bundle.display()))?
        .to_string();
    let family = if v6 { "-6" } else { "-4" };
    let out = command_output(
        "nsenter",
        &[
            &format!("--net={ns}"),
            "ip",
            "-o",
            family,
            "addr",
            "show",
            "dev",
            "eth0",
            "scope",
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

/// A host outside the pod network: a network namespace of its own, joined to the host by a
/// veth pair, serving HTTP with the testapp. Pods reach it as they reach the outside world
/// (through the bridge, forwarded by the host), on the path a blocked connection would take.
/// Dropping it stops the app and deletes the namespace and the veth pair.
struct Upstream {
    netns: String,
    host_link: String,
    app: Option<Child>,
    v4: SocketAddr,
    v6: SocketAddr,
}

/// The addresses of an upstream's link (a /30 and a /64): the host's end and the upstream's.
struct Link {
    host_v4: String,
    v4: String,
    host_v6: String,
    v6: String,
}

impl Upstream {
    /// `slot` keeps the addresses of upstreams that run at the same time apart: the host
    /// side is 198.51.100.(4*slot+1)/30 and fd65:32e0:75:(slot)::1/64, the upstream the next one.
    fn start(slot: u8) -> Res<Upstream> {
        Self::start_at(&Link {
            host_v4: format!("198.51.100.{}", 4 * slot + 1),
            v4: format!("198.51.100.{}", 4 * slot + 2),
            host_v6: format!("fd65:32e0:75:{slot}::1"),
            v6: format!("fd65:32e0:75:{slot}::2"),
        })
    }

    /// A stand-in for a cloud metadata service: 169.254.169.254 and fd00:ec2::254, reached
    /// through the host as a metadata address is on a cloud machine.
    fn metadata() -> Res<Upstream> {
        Self::start_at(&Link {
            host_v4: "169.254.169.253".into(),
            v4: "169.254.169.254".into(),
            host_v6: "fd00:ec2::1".into(),
            v6: "fd00:ec2::254".into(),
        })
    }

    fn start_at(link: &Link) -> Res<Upstream> {
        let hex = random_hex(3);
        let mut upstream = Upstream {
            netns: format!("berthe2e-up-{hex}"),
            host_link: format!("e2eup{hex}"),
            app: None,
            v4: socket(&link.v4, PORT)?,
            v6: socket(&link.v6, PORT)?,
        };
        upstream.set_up(link)?;
        Ok(upstream)
    }

    fn set_up(&mut self, link: &Link) -> Res<()> {
        let (ns, host) = (self.netns.as_str(), self.host_link.as_str());
        let peer = format!("{host}p");
        let (host_v4, host_v6) = (&link.host_v4, &link.host_v6);
        let (v4, v6) = (&link.v4, &link.v6);
        let in_ns = |args: &[&str]| -> Res<String> {
            let mut all = vec!["netns", "exec", ns, "ip"];
            all.extend_from_slice(args);
            command_output("ip", &all)
        };
        command_output("ip", &["netns", "add", ns])?;
        command_output(
            "ip",
            &[
                "link", "add", host, "type", "veth", "peer", "name", &peer, "netns", ns,
            ],
        )?;
        command_output(
            "ip",
            &["addr", "add", &format!("{host_v4}/30"), "dev", host],
        )?;
        command_output(
            "ip",
            &[
                "-6",
                "addr",
                "add",
                &format!("{host_v6}/64"),
                "dev",
                host,
                "nodad",
            ],
        )?;
        command_output("ip", &["link", "set", host, "up"])?;
        in_ns(&["link", "set", "lo", "up"])?;
        in_ns(&["addr", "add", &format!("{v4}/30"), "dev", &peer])?;
        in_ns(&[
            "-6",
            "addr",
            "add",
            &format!("{v6}/64"),
            "dev",
            &peer,
            "nodad",
        ])?;
        in_ns(&["link", "set", &peer, "up"])?;
        // Replies go back through the host whether or not it masquerades pod traffic.
        in_ns(&["route", "add", "default", "via", host_v4])?;
        in_ns(&["-6", "route", "add", "default", "via", host_v6])?;

        let app = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(testapp_binary()?)
            .args(["http", &PORT.to_string(), "--text", "upstream"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start the upstream app in {ns}: {e}"))?;
        self.app = Some(app);
        // The host reaches it on both families: the upstream itself works.
        for target in [self.v4, self.v6] {
            let reached = poll(Duration::from_secs(10), Duration::from_millis(100), || {
                TcpStream::connect_timeout(&target, Duration::from_secs(1))
                    .ok()
                    .map(drop)
            });
            ensure!(
                reached.is_some(),
                "the host cannot reach the upstream {target} in {ns} it just set up"
            );
        }
        Ok(())
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(mut app) = self.app.take() {
            let _ = app.kill();
            let _ = app.wait();
        }
        // Deleting the namespace deletes the veth end in it, and so the pair.
        if let Err(e) = command_output("ip", &["netns", "del", &self.netns]) {
            eprintln!(
                "cleanup: deleting the network namespace {}: {e}",
                self.netns
            );
        }
        if link_exists(&self.host_link) {
            if let Err(e) = command_output("ip", &["link", "del", &self.host_link]) {
                eprintln!("cleanup: deleting the link {}: {e}", self.host_link);
            }
        }
    }
}

/// What one connection attempt of `testapp connect` ended with.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Connected,
    Refused,
    Unreachable,
}

/// Runs `testapp connect` in one pod (`spec` fields added to the testapp spec) against
/// `targets` in order; returns each outcome with its line, and the pod's output.
fn connect_outcomes(
    env: &Env,
    spec: &[(&str, Value)],
    targets: &[SocketAddr],
) -> Res<(Vec<(Outcome, String)>, String)> {
    let api = &env.api;
    let mut args = vec!["connect".to_string()];
    args.extend(targets.iter().map(SocketAddr::to_string));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut pod_spec = testapp_spec(env, &args);
    for (key, value) in spec {
        pod_spec = with(pod_spec, key, value.clone());
    }
    let pod = api.launch(pod_spec)?;
    let done = api.wait_terminal(&pod.id, timeouts::STOP)?;
    ensure!(
        done.status == ContainerStatus::Exited,
        "the connecting pod ended {}: {}",
        done.status,
        pod.describe()
    );
    // One line per target; the log may trail the exit by a moment.
    let mut log = String::new();
    let outcomes = poll(Duration::from_secs(5), Duration::from_millis(250), || {
        log = api.logs(&pod.id).ok()?;
        let outcomes = parse_outcomes(&log);
        (outcomes.len() == targets.len()).then_some(outcomes)
    })
    .ok_or_else(|| {
        format!(
            "the connecting pod {} should print one line for each of {} targets; its log:\n{}",
            pod.id,
            targets.len(),
            indent(&log)
        )
    })?;
    for (i, (target, (_, line))) in targets.iter().zip(&outcomes).enumerate() {
        ensure!(
            line.starts_with(&format!("{target} ")),
            "line {} of the connecting pod's output is about another target than {target}: {line:?}",
            i + 1
        );
    }
    Ok((outcomes, log))
}

/// Runs `testapp connect` in one pod: the upstream first, then `blocked`, then the upstream
/// again. Fails unless the pod reached the upstream both times; returns the outcome for each of
/// `blocked`, with the pod's output for messages.
fn connect_from_pod(
    env: &Env,
    upstream: &Upstream,
    blocked: &[SocketAddr],
) -> Res<(Vec<Outcome>, String)> {
    connect_from_pod_with(env, &[], upstream, blocked)
}

/// [`connect_from_pod`] for a pod with `spec` fields added.
fn connect_from_pod_with(
    env: &Env,
    spec: &[(&str, Value)],
    upstream: &Upstream,
    blocked: &[SocketAddr],
) -> Res<(Vec<Outcome>, String)> {
    let controls = [upstream.v4, upstream.v6];
    let targets: Vec<SocketAddr> = controls
        .iter()
        .chain(blocked)
        .chain(&controls)
        .copied()
        .collect();
    let (outcomes, log) = connect_outcomes(env, spec, &targets)?;
    for (i, (target, (outcome, line))) in targets.iter().zip(&outcomes).enumerate() {
        let is_control = i < controls.len() || i >= controls.len() + blocked.len();
        ensure!(
            !is_control || *outcome == Outcome::Connected,
            "the client pod could not reach the upstream {target} outside the pod network \
             ({line:?}), so its failures to reach {blocked:?} would prove nothing; its output:\n{}",
            indent(&log)
        );
    }
    let blocked_outcomes = outcomes
        .into_iter()
        .skip(controls.len())
        .take(blocked.len())
        .map(|(outcome, _)| outcome)
        .collect();
    Ok((blocked_outcomes, log))
}

/// The `ADDR outcome` lines of a stored pod log (`<timestamp> <stream> <text>` lines), in order.
fn parse_outcomes(log: &str) -> Vec<(Outcome, String)> {
    log.lines()
        .filter_map(|line| line.splitn(3, ' ').nth(2))
        .filter_map(|text| {
            let (addr, rest) = text.split_once(' ')?;
            addr.parse::<SocketAddr>().ok()?;
            let outcome = if rest == "connected" {
                Outcome::Connected
            } else if rest == "refused" {
                Outcome::Refused
            } else if rest.starts_with("unreachable") {
                Outcome::Unreachable
            } else {
                return None;
            };
            Some((outcome, text.to_string()))
        })
        .collect()
}

pub fn pods_cannot_reach_each_other(env: &Env) -> Res<()> {
    let api = &env.api;
    let upstream = Upstream::start(0)?;
    let server = api.launch(json!({
        "image": env.images.testapp,
        "ports": [PORT],
        "entrypoint": [crate::common::images::TESTAPP_PATH, "http", PORT.to_string()],
        "keep_warm_seconds": -1,
    }))?;
    api.wait_running(&server.id)?;
    server.wait_http_ok(PORT, "/")?;
    let mut targets = Vec::new();
    for v6 in [false, true] {
        let target = socket(&pod_address(env, &server.id, v6)?, PORT)?;
        // The host reaches the pod directly: the address is right and the app listens.
        ensure!(
            TcpStream::connect_timeout(&target, Duration::from_secs(3)).is_ok(),
            "the host cannot reach {target}, so the check below would prove nothing"
        );
        targets.push(target);
    }
    let (outcomes, out) = connect_from_pod(env, &upstream, &targets)?;
    for (target, outcome) in targets.iter().zip(outcomes) {
        ensure!(
            outcome == Outcome::Unreachable,
            "another pod reached {target} ({outcome:?}); its output:\n{}",
            indent(&out)
        );
    }
    Ok(())
}

pub fn pods_cannot_reach_host_services(env: &Env) -> Res<()> {
    let upstream = Upstream::start(1)?;
    // A host service on every address, as sshd or a database often is.
    let listener = TcpListener::bind("[::]:0").map_err(|e| format!("bind: {e}"))?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let targets = [
        socket(&env.server.gateway_v4(), port)?,
        socket(&env.server.gateway_v6()?, port)?,
    ];
    let (outcomes, out) = connect_from_pod(env, &upstream, &targets)?;
    for (target, outcome) in targets.iter().zip(outcomes) {
        ensure!(
            outcome == Outcome::Unreachable,
            "a pod reached the host service at {target} ({outcome:?}); its output:\n{}",
            indent(&out)
        );
        // Checked after a pod ran, when the bridge (and so the gateway address) exists.
        ensure!(
            TcpStream::connect_timeout(target, Duration::from_secs(3)).is_ok(),
            "the host itself cannot reach its service at {target}, so the check proves nothing"
        );
    }
    Ok(())
}

/// The host reaches `target`: it is up, so a pod failing to reach it means something.
fn host_reaches(target: SocketAddr) -> Res<()> {
    ensure!(
        TcpStream::connect_timeout(&target, Duration::from_secs(3)).is_ok(),
        "the host itself cannot reach {target}, so the check proves nothing"
    );
    Ok(())
}

fn metadata_unreachable(env: &Env, runtime: &str, slot: u8) -> Res<()> {
    let upstream = Upstream::start(slot)?;
    let metadata = Upstream::metadata()?;
    let targets = [metadata.v4, metadata.v6];
    for target in targets {
        host_reaches(target)?;
    }
    let spec = [("runtime", json!(runtime))];
    let (outcomes, out) = connect_from_pod_with(env, &spec, &upstream, &targets)?;
    for (target, outcome) in targets.iter().zip(outcomes) {
        ensure!(
            outcome == Outcome::Unreachable,
            "a {runtime} pod reached the metadata address {target} ({outcome:?}); its output:\n{}",
            indent(&out)
        );
    }
    Ok(())
}

pub fn metadata_addresses_are_unreachable_under_runc(env: &Env) -> Res<()> {
    metadata_unreachable(env, "runc", 2)
}

pub fn metadata_addresses_are_unreachable_under_gvisor(env: &Env) -> Res<()> {
    metadata_unreachable(env, "gvisor", 3)
}

/// `block_network` cuts everything a default pod reaches; `allow_list` lets exactly its
/// networks through.
fn egress_policies(env: &Env, runtime: &str, slots: (u8, u8)) -> Res<()> {
    let allowed = Upstream::start(slots.0)?;
    let other = Upstream::start(slots.1)?;
    let targets = [allowed.v4, allowed.v6, other.v4, other.v6];
    let runtime = ("runtime", json!(runtime));

    let (outcomes, out) = connect_outcomes(env, std::slice::from_ref(&runtime), &targets)?;
    ensure!(
        outcomes.iter().all(|(o, _)| *o == Outcome::Connected),
        "a default pod must reach both test hosts; its output:\n{}",
        indent(&out)
    );
    let (outcomes, out) = connect_outcomes(
        env,
        &[runtime.clone(), ("block_network", json!(true))],
        &targets,
    )?;
    ensure!(
        outcomes.iter().all(|(o, _)| *o == Outcome::Unreachable),
        "a block_network pod reached a host; its output:\n{}",
        indent(&out)
    );
    let list = json!([
        format!("{}/32", allowed.v4.ip()),
        allowed.v6.ip().to_string()
    ]);
    let (outcomes, out) = connect_outcomes(env, &[runtime, ("allow_list", list)], &targets)?;
    let got: Vec<&Outcome> = outcomes.iter().map(|(o, _)| o).collect();
    ensure!(
        got == [
            &Outcome::Connected,
            &Outcome::Connected,
            &Outcome::Unreachable,
            &Outcome::Unreachable
        ],
        "an allow_list pod must reach exactly the listed host; its output:\n{}",
        indent(&out)
    );
    Ok(())
}

pub fn egress_policies_under_runc(env: &Env) -> Res<()> {
    egress_policies(env, "runc", (4, 5))
}

pub fn egress_policies_under_gvisor(env: &Env) -> Res<()> {
    egress_policies(env, "gvisor", (6, 7))
}
