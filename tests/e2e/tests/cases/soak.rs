//! Long runs and load leave nothing behind: 300 pods created and stopped in waves while a
//! client loops requests through the ingress, and 2,000 idle keep-alive connections held
//! through the ingress while wrk runs beside them.
//!
//! Both run alone (see `cases::exclusive`), each on a server of its own, so the host state and
//! the server memory they count are theirs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{testapp_spec, with};
use crate::common::client::{Api, Pod, RawHttp};
use crate::common::harness::{finish_own_server, own_server_dir, Env};
use crate::common::leaks::Snapshot;
use crate::common::server::{PodNetwork, ProcessUsage, Server};
use crate::common::{command_output, indent, poll, timeouts, Res};
use crate::ensure;

/// Apart from the suite's network and the other test servers'.
const SOAK_NETWORK: PodNetwork = PodNetwork {
    bridge: "berthtest13",
    subnet_v4: "10.228.0.0/16",
    subnet_v6: None,
};
const LOAD_NETWORK: PodNetwork = PodNetwork {
    bridge: "berthtest14",
    subnet_v4: "10.229.0.0/16",
    subnet_v6: None,
};

const WAVES: usize = 6;
const PODS_PER_WAVE: usize = 50;
/// Pods made and stopped before the baseline is taken, so it includes what a server keeps
/// once it has run pods at all (allocator arenas, prepared statements, its warm networks).
const WARM_UP_PODS: usize = 10;
/// Growth of the server's resident memory over the soak that still counts as its baseline:
/// the allocator keeps some freed pages, and the log and database caches fill.
const RSS_SLACK_KIB: u64 = 24 * 1024;

/// 300 pods, in waves of 50, are created, answer through the ingress and are stopped, while a
/// client loops requests against a pod that stays up and against every pod of the current
/// wave. Afterwards the server's namespaces, mounts, veths, firewall rules, shims, cgroups,
/// address leases, descriptors and memory are back to what they were before the waves, and
/// no request failed except to a pod being stopped.
pub fn pods_in_waves_leave_nothing(env: &Env) -> Res<()> {
    let dir = own_server_dir(env, &SOAK_NETWORK, "soak")?;
    let server = Server::start_with(&dir, &env.registry.host(), SOAK_NETWORK)?;
    let api = Api::new(&server)?;
    let outcome = soak(env, &server, &api);
    finish_own_server(&server, &api, &SOAK_NETWORK, outcome)
}

/// A pod URL the client hits, and whether the pod is being stopped (its failures are
/// expected then).
struct Target {
    url: String,
    stopping: AtomicBool,
}

#[derive(Default)]
struct ClientTally {
    answered: AtomicUsize,
    /// Failed requests to pods being stopped: allowed.
    refused_while_stopping: AtomicUsize,
    /// Everything else that was not a 200.
    failures: Mutex<Vec<String>>,
}

fn soak(env: &Env, server: &Server, api: &Api) -> Res<()> {
    let scope = server
        .state_dir
        .parent()
        .and_then(|d| d.parent())
        .ok_or("the soak server's directory has no parent")?
        .to_path_buf();
    let steady = api.launch(with(
        testapp_spec(env, &["http", "8080"]),
        "keep_warm_seconds",
        json!(-1),
    ))?;
    api.wait_running(&steady.id)?;
    steady.wait_http_ok(8080, "/")?;
    run_wave(env, api, WARM_UP_PODS, "warm-up", &mut |_| Ok(()))?;

    let baseline = Snapshot::settled(&scope, Duration::from_secs(20));
    let base_usage = server.usage()?;
    let base_counts = baseline.counts();

    let targets: Arc<Mutex<Vec<Arc<Target>>>> = Arc::new(Mutex::new(vec![Arc::new(Target {
        url: steady.url(8080)?,
        stopping: AtomicBool::new(false),
    })]));
    let tally = Arc::new(ClientTally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (targets, tally, stop) = (targets.clone(), tally.clone(), stop.clone());
        let ingress = server.ingress;
        std::thread::spawn(move || {
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let target = {
                    let all = targets.lock().unwrap_or_else(|p| p.into_inner());
                    all[n % all.len()].clone()
                };
                let path = format!("/soak-{n}");
                let result = RawHttp::connect(ingress, &target.url).and_then(|mut c| c.get(&path));
                match result {
                    Ok((200, _)) => {
                        tally.answered.fetch_add(1, Ordering::SeqCst);
                    }
                    _ if target.stopping.load(Ordering::SeqCst) => {
                        tally.refused_while_stopping.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok((status, body)) => tally
                        .failures
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(format!("{}{path}: {status} {}", target.url, body.trim())),
                    Err(e) => tally
                        .failures
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(format!("{}{path}: {e}", target.url)),
                }
                // Leaves the cores to the creates; a few hundred requests a second is plenty.
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };

    let started = Instant::now();
    let mut peak = base_counts.clone();
    let mut waves = Ok(());
    for wave in 0..WAVES {
        let label = format!("wave {}", wave + 1);
        let result = run_wave_watched(env, api, &label, &targets, &scope, &mut peak);
        if result.is_err() {
            waves = result;
            break;
        }
    }
    stop.store(true, Ordering::SeqCst);
    let _ = client.join();
    waves?;
    let soaked = started.elapsed();

    // Back to the baseline: teardown of the last stops may finish just after they are
    // recorded, and the warm networks refill in the background.
    let mut after = Snapshot::take(&scope);
    let mut usage = server.usage()?;
    let settled = poll(Duration::from_secs(60), Duration::from_secs(1), || {
        after = Snapshot::take(&scope);
        usage = server.usage().ok()?;
        (after.counts() == base_counts && usage.fds <= base_usage.fds).then_some(())
    });
    let table = counts_table(&base_counts, &peak, &after.counts(), base_usage, usage);
    let answered = tally.answered.load(Ordering::SeqCst);
    let while_stopping = tally.refused_while_stopping.load(Ordering::SeqCst);
    let failures = tally
        .failures
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    eprintln!(
        "soak: {} pods in {WAVES} waves in {soaked:.1?}; {answered} requests answered, \
         {while_stopping} refused by pods being stopped, {} failed\n{table}",
        WAVES * PODS_PER_WAVE,
        failures.len()
    );
    ensure!(
        failures.is_empty(),
        "{} requests through the ingress failed during the soak, to pods that were not being \
         stopped:\n{}",
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
        answered > WAVES * PODS_PER_WAVE,
        "the client got only {answered} answers in {soaked:.1?}: it was not looping"
    );
    ensure!(
        settled.is_some(),
        "a minute after the last wave stopped, the soak server's host state is not back to its \
         baseline:\n{table}\nnew since the baseline:\n{}",
        indent(&after.new_since(&baseline).join("\n"))
    );
    ensure!(
        usage.rss_kib <= base_usage.rss_kib + RSS_SLACK_KIB,
        "the server's memory grew from {:.1} MiB to {:.1} MiB over {} pods (allowed: {} MiB \
         more)",
        base_usage.rss_mib(),
        usage.rss_mib(),
        WAVES * PODS_PER_WAVE,
        RSS_SLACK_KIB / 1024
    );
    Ok(())
}

/// One wave while the client runs: its pods join the client's targets once they answer, the
/// host state is counted with all of them up, and they are marked before they are stopped.
fn run_wave_watched(
    env: &Env,
    api: &Api,
    label: &str,
    targets: &Arc<Mutex<Vec<Arc<Target>>>>,
    scope: &std::path::Path,
    peak: &mut BTreeMap<&'static str, usize>,
) -> Res<()> {
    let mut wave_targets = Vec::new();
    let mut observe = |pods: &[Pod<'_>]| -> Res<()> {
        for pod in pods {
            let target = Arc::new(Target {
                url: pod.url(8080)?,
                stopping: AtomicBool::new(false),
            });
            targets
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(target.clone());
            wave_targets.push(target);
        }
        // Long enough for the client to reach every pod of the wave a few times.
        std::thread::sleep(Duration::from_secs(2));
        for (kind, count) in Snapshot::take(scope).counts() {
            let top = peak.entry(kind).or_default();
            *top = (*top).max(count);
        }
        for target in &wave_targets {
            target.stopping.store(true, Ordering::SeqCst);
        }
        Ok(())
    };
    let result = run_wave(env, api, PODS_PER_WAVE, label, &mut observe);
    let mut all = targets.lock().unwrap_or_else(|p| p.into_inner());
    all.retain(|t| !t.stopping.load(Ordering::SeqCst));
    result
}

/// Creates `count` pods at once, waits until each answers through the ingress, runs `with_up`
/// on them, then stops them all at once and waits until each has ended.
fn run_wave(
    env: &Env,
    api: &Api,
    count: usize,
    label: &str,
    with_up: &mut dyn FnMut(&[Pod<'_>]) -> Res<()>,
) -> Res<()> {
    let started = Instant::now();
    let mut pods = Vec::with_capacity(count);
    for _ in 0..count {
        pods.push(api.launch(testapp_spec(env, &["http", "8080"]))?);
    }
    for pod in &pods {
        api.wait_running(&pod.id)?;
        pod.wait_http_ok(8080, "/")?;
    }
    let up = started.elapsed();
    let hooked = with_up(&pods);
    for pod in &pods {
        api.stop(&pod.id)?;
    }
    for pod in &pods {
        api.wait_terminal(&pod.id, timeouts::STOP)?;
    }
    eprintln!(
        "soak: {label}: {count} pods answering {up:.1?} after the first create, all ended \
         {:.1?} after it",
        started.elapsed()
    );
    hooked
}

/// kind: baseline, peak, after; then the server's descriptors and memory.
fn counts_table(
    base: &BTreeMap<&'static str, usize>,
    peak: &BTreeMap<&'static str, usize>,
    after: &BTreeMap<&'static str, usize>,
    base_usage: ProcessUsage,
    usage: ProcessUsage,
) -> String {
    let mut lines = vec![format!(
        "    {:<22} {:>8} {:>8} {:>8}",
        "", "baseline", "peak", "after"
    )];
    for (kind, count) in base {
        lines.push(format!(
            "    {kind:<22} {count:>8} {:>8} {:>8}",
            peak.get(kind).copied().unwrap_or_default(),
            after.get(kind).copied().unwrap_or_default()
        ));
    }
    lines.push(format!(
        "    {:<22} {:>8} {:>8} {:>8}",
        "server descriptors", base_usage.fds, "", usage.fds
    ));
    lines.push(format!(
        "    {:<22} {:>8.1} {:>8} {:>8.1}",
        "server RSS (MiB)",
        base_usage.rss_mib(),
        "",
        usage.rss_mib()
    ));
    lines.join("\n")
}

const IDLE_PODS: usize = 4;
const IDLE_PER_POD: usize = 500;

/// 2,000 keep-alive connections through the ingress (500 to each of 4 pods, under the
/// default per-pod cap), each idle after one request, are all held while wrk loads one of the
/// pods; afterwards every one of them answers a second request, wrk saw no error and no
/// non-2xx answer, and the server's memory with them all open is printed.
pub fn idle_connections_and_wrk(env: &Env) -> Res<()> {
    let dir = own_server_dir(env, &LOAD_NETWORK, "load")?;
    let server = Server::start_with(&dir, &env.registry.host(), LOAD_NETWORK)?;
    let api = Api::new(&server)?;
    let outcome = hold_and_load(env, &server, &api);
    finish_own_server(&server, &api, &LOAD_NETWORK, outcome)
}

fn hold_and_load(env: &Env, server: &Server, api: &Api) -> Res<()> {
    raise_open_files_limit()?;
    let mut pods = Vec::new();
    for _ in 0..IDLE_PODS {
        pods.push(api.launch(with(
            testapp_spec(env, &["http", "8080"]),
            "keep_warm_seconds",
            json!(-1),
        ))?);
    }
    let mut urls = Vec::new();
    for pod in &pods {
        api.wait_running(&pod.id)?;
        pod.wait_http_ok(8080, "/")?;
        urls.push(pod.url(8080)?);
    }
    let before = server.usage()?;

    let opening = Instant::now();
    let mut held = Vec::with_capacity(IDLE_PODS * IDLE_PER_POD);
    for (i, url) in (0..IDLE_PER_POD).flat_map(|_| urls.iter()).enumerate() {
        let mut conn = RawHttp::connect(server.ingress, url)
            .map_err(|e| format!("opening idle connection {i}: {e}"))?;
        match conn.get(&format!("/idle-{i}")) {
            Ok((200, _)) => held.push((url.clone(), conn)),
            Ok((status, body)) => {
                return Err(format!(
                    "idle connection {i} to {url}: {status} {}",
                    body.trim()
                ))
            }
            Err(e) => return Err(format!("idle connection {i} to {url}: {e}")),
        }
    }
    let opened = opening.elapsed();
    let holding = server.usage()?;

    let wrk = run_wrk(server, &urls[0])?;
    let during = server.usage()?;

    let mut dropped = Vec::new();
    for (i, (url, conn)) in held.iter_mut().enumerate() {
        match conn.get(&format!("/again-{i}")) {
            Ok((200, _)) => {}
            Ok((status, _)) => dropped.push(format!("connection {i} to {url}: {status}")),
            Err(e) => dropped.push(format!("connection {i} to {url}: {e}")),
        }
    }
    let count = held.len();
    drop(held);
    let mut after = server.usage()?;
    let _ = poll(Duration::from_secs(10), Duration::from_millis(250), || {
        after = server.usage().ok()?;
        (after.fds <= before.fds).then_some(())
    });
    eprintln!(
        "load: {count} idle connections opened in {opened:.1?}; server RSS {:.1} MiB before, \
         {:.1} MiB holding them ({:.1} KiB each), {:.1} MiB after wrk, {:.1} MiB once closed; \
         descriptors {} -> {} -> {}\nload: wrk beside them: {}",
        before.rss_mib(),
        holding.rss_mib(),
        (holding.rss_kib.saturating_sub(before.rss_kib)) as f64 / count as f64,
        during.rss_mib(),
        after.rss_mib(),
        before.fds,
        holding.fds,
        after.fds,
        wrk.summary
    );
    ensure!(
        dropped.is_empty(),
        "{} of {count} idle connections through the ingress did not answer after the wrk run:\n{}",
        dropped.len(),
        indent(
            &dropped
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        )
    );
    ensure!(
        wrk.requests > 0 && wrk.errors.is_empty(),
        "wrk through the ingress beside {count} idle connections: {} requests, errors: {}\n{}",
        wrk.requests,
        wrk.errors.join("; "),
        indent(&wrk.output)
    );
    ensure!(
        after.fds <= before.fds,
        "the server holds {} descriptors after the connections closed, {} before they opened",
        after.fds,
        before.fds
    );
    Ok(())
}

struct WrkRun {
    requests: u64,
    /// wrk's socket-error and non-2xx lines.
    errors: Vec<String>,
    summary: String,
    output: String,
}

/// wrk for 10 s with 50 connections against `url` through the ingress.
fn run_wrk(server: &Server, url: &str) -> Res<WrkRun> {
    let host = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let target = format!("http://{}/", server.ingress);
    let output = command_output(
        "wrk",
        &[
            "-t2",
            "-c50",
            "-d10s",
            "--latency",
            "-H",
            &format!("Host: {host}"),
            &target,
        ],
    )
    .map_err(|e| format!("{e} (wrk comes from scripts/install.sh)"))?;
    let requests = output
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .ok_or_else(|| format!("no request count in wrk's output:\n{}", indent(&output)))?;
    let errors: Vec<String> = output
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Socket errors") || l.starts_with("Non-2xx"))
        .map(str::to_string)
        .collect();
    let pick = |prefix: &str| {
        output
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .unwrap_or_default()
            .to_string()
    };
    let summary = format!(
        "{requests} requests, {}, latency p50/p99: {} / {}",
        pick("Requests/sec:"),
        pick("50%"),
        pick("99%")
    );
    Ok(WrkRun {
        requests,
        errors,
        summary,
        output,
    })
}

/// Each held connection is two descriptors here (a socket and its reading clone): lift the
/// soft limit to the hard one, as a server would.
fn raise_open_files_limit() -> Res<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write or read only the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
        }
    }
    let needed = (IDLE_PODS * IDLE_PER_POD * 2 + 256) as u64;
    ensure!(
        limit.rlim_max >= needed,
        "this process may open only {} files; the load test needs {needed}",
        limit.rlim_max
    );
    Ok(())
}
