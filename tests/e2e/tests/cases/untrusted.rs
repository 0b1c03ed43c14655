//! Hostile code in a pod, under each runtime: `testapp attack` tries what code looking for
//! a way to the host tries first (mounts, the kernel keyring, modules, the clock and the
//! hostname, device nodes, reboot, io_uring, bpf, /proc/sys, /proc/kcore, host devices and
//! processes, new namespaces), and every attempt must fail. Under runc the seccomp filter
//! must be on (mode 2).
//!
//! Under gVisor two calls succeed but never reach the host kernel: the Sentry (gVisor's
//! user-space kernel) implements io_uring and mount namespaces itself, so what they act on
//! is the Sentry's own state inside the sandbox ([`CONTAINED_BY_GVISOR`]). A mount in such a
//! namespace still fails (the `mount` attack), for want of CAP_SYS_ADMIN.

use std::time::Duration;

use berth_api::ContainerStatus;
use serde_json::json;

use super::{testapp_spec, with};
use crate::common::harness::Env;
use crate::common::{indent, poll, timeouts, Res};
use crate::ensure;

const ATTACKS: [&str; 14] = [
    "mount",
    "add_key",
    "init_module",
    "clock_settime",
    "sethostname",
    "mknod_device",
    "reboot",
    "io_uring_setup",
    "bpf",
    "write_core_pattern",
    "read_kcore",
    "host_block_devices",
    "see_host_processes",
    "unshare_mount_namespace",
];

/// Attacks gVisor answers inside the sandbox instead of refusing (see the module doc).
const CONTAINED_BY_GVISOR: [&str; 2] = ["io_uring_setup", "unshare_mount_namespace"];

fn attacks_fail(env: &Env, runtime: &str) -> Res<()> {
    let api = &env.api;
    let pod = api.launch(with(
        testapp_spec(env, &["attack"]),
        "runtime",
        json!(runtime),
    ))?;
    ensure!(
        pod.created.runtime == runtime,
        "the pod should say it runs under {runtime}: {}",
        pod.describe()
    );
    let done = api.wait_terminal(&pod.id, timeouts::STOP)?;
    let mut log = String::new();
    poll(Duration::from_secs(5), Duration::from_millis(250), || {
        log = api.logs(&pod.id).ok()?;
        log.contains("seccomp:").then_some(())
    })
    .ok_or_else(|| format!("the attacking pod printed no summary: {}", pod.describe()))?;
    println!("{runtime} pod:\n{}", indent(&log));
    for attack in ATTACKS {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("attack {attack}: ")))
            .ok_or_else(|| format!("no outcome for {attack}; the log:\n{}", indent(&log)))?;
        let contained = runtime == "gvisor" && CONTAINED_BY_GVISOR.contains(&attack);
        ensure!(
            line.contains(": blocked (") || contained,
            "under {runtime}, {attack} got through: {line}"
        );
    }
    ensure!(
        done.status == ContainerStatus::Exited,
        "the attacking pod should have exited: {}",
        pod.describe()
    );
    if runtime == "runc" {
        ensure!(
            log.contains("seccomp: 2"),
            "a runc pod must run under a seccomp filter (Seccomp: 2); the log:\n{}",
            indent(&log)
        );
    }
    Ok(())
}

pub fn attacks_fail_under_runc(env: &Env) -> Res<()> {
    attacks_fail(env, "runc")
}

pub fn attacks_fail_under_gvisor(env: &Env) -> Res<()> {
    attacks_fail(env, "gvisor")
}

/// A runtime the server does not offer, or two egress policies at once, are refused at
/// create with the field named.
pub fn bad_isolation_requests_are_refused(env: &Env) -> Res<()> {
    let api = &env.api;
    for (field, value, wants) in [
        ("runtime", json!("kata"), "runtime"),
        ("allow_list", json!(["not-a-cidr"]), "allow_list"),
    ] {
        let spec = with(testapp_spec(env, &["sleep"]), field, value);
        let (status, body) = api.create_raw(&spec.to_string(), Some(&api.token))?;
        ensure!(
            status == 400 && body.contains(wants),
            "{field} should be refused with 400 naming it, got {status}: {body}"
        );
    }
    let spec = with(
        with(testapp_spec(env, &["sleep"]), "block_network", json!(true)),
        "allow_list",
        json!(["10.0.0.0/8"]),
    );
    let (status, body) = api.create_raw(&spec.to_string(), Some(&api.token))?;
    ensure!(
        status == 400 && body.contains("allow_list"),
        "block_network with an allow_list should be refused, got {status}: {body}"
    );
    Ok(())
}
