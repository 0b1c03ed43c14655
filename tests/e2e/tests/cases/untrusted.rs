//! Hostile code in a pod, under each runtime: `testapp attack` tries what code looking for
//! a way to the host tries first (mounts, the kernel keyring, modules, the clock and the
//! hostname, device nodes, reboot, io_uring, bpf, /proc/sys, /proc/kcore, host devices and
//! processes, ptrace of a host process, new namespaces), and every attempt must fail. Under runc the seccomp filter
//! must be on (mode 2).
//!
//! Under gVisor two calls succeed but never reach the host kernel: the Sentry (gVisor's
//! user-space kernel) implements io_uring and mount namespaces itself, so what they act on
//! is the Sentry's own state inside the sandbox ([`CONTAINED_BY_GVISOR`]). A mount in such a
//! namespace still fails (the `mount` attack), for want of CAP_SYS_ADMIN.

use std::time::Duration;

use berth_api::ContainerStatus;
use serde_json::json;

use super::{sleeper_spec, testapp_spec, with};
use crate::common::harness::Env;
use crate::common::{indent, poll, timeouts, Res};
use crate::ensure;

const ATTACKS: [&str; 15] = [
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
    "ptrace_host_process",
    "unshare_mount_namespace",
];

/// Attacks gVisor answers inside the sandbox instead of refusing (see the module doc).
const CONTAINED_BY_GVISOR: [&str; 2] = ["io_uring_setup", "unshare_mount_namespace"];

fn attacks_fail(env: &Env, runtime: &str) -> Res<()> {
    let api = &env.api;
    let spec = with(testapp_spec(env, &["attack"]), "runtime", json!(runtime));
    // A host process for the ptrace attack to aim at: this test's own.
    let spec = with(
        spec,
        "env",
        json!({"BERTH_ATTACK_HOST_PID": std::process::id().to_string()}),
    );
    let pod = api.launch(spec)?;
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

/// `berth container exec` runs a command in a running pod under `runtime`: stdout and stderr
/// come back apart, the command's exit code becomes the CLI's, and the command sees the pod's
/// files and the env it was given; the SDK's `exec` returns the same.
fn exec_runs_in_the_pod(env: &Env, runtime: &str) -> Res<()> {
    let api = &env.api;
    let pod = api.launch(sleeper_spec(env, runtime))?;
    api.wait_running(&pod.id)?;
    let script = "echo out $GREETING; ls /www; echo err >&2; exit 7";
    let out = api.cli(&[
        "container",
        "exec",
        &pod.id,
        "--env",
        "GREETING=hi",
        "--",
        "sh",
        "-c",
        script,
    ])?;
    ensure!(
        out.status.code() == Some(7),
        "exec should exit with the command's 7 under {runtime}: {:?}\n{}",
        out.status,
        out.combined()
    );
    ensure!(
        out.stdout == "out hi\nindex.html\n" && out.stderr == "err\n",
        "exec output under {runtime}: stdout {:?}, stderr {:?}",
        out.stdout,
        out.stderr
    );
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let code = format!(
        "import berth, json\n\
         c = berth.client.Client()\n\
         p = berth.PodInstance(c, c.call('GET', '/v1/containers/{id}'), True)\n\
         r = p.exec('sh', '-c', 'cat /www/index.html; exit 3')\n\
         print(json.dumps([r.exit_code, r.stdout]))\n",
        id = pod.id
    );
    let sdk = api.python(dir.path(), &["-c", &code])?;
    let want = format!(
        "[3, \"{}\\n\"]",
        crate::common::images::busybox_index_text()
    );
    ensure!(
        sdk.status.success() && sdk.stdout.trim() == want,
        "the SDK's exec under {runtime} should give {want}: {}",
        sdk.combined()
    );
    // Not running any more: a clear 409.
    api.stop(&pod.id)?;
    api.wait_terminal(&pod.id, timeouts::STOP)?;
    let out = api.cli(&["container", "exec", &pod.id, "--", "true"])?;
    ensure!(
        !out.status.success() && out.stderr.contains("not RUNNING"),
        "exec in a stopped pod should fail saying so: {}",
        out.combined()
    );
    Ok(())
}

pub fn exec_under_runc(env: &Env) -> Res<()> {
    exec_runs_in_the_pod(env, "runc")
}

pub fn exec_under_gvisor(env: &Env) -> Res<()> {
    exec_runs_in_the_pod(env, "gvisor")
}

/// runc pods run in a user namespace of their own by default: the pod's root is an
/// unprivileged host id (its processes are owned by it on the host), two pods get ranges
/// that do not overlap, the pod's root still owns its files and can write a volume (stored
/// with the pod's own ids), and files copied in belong to the pod's user as the pod sees
/// them. `privileged_user` runs one with the host's ids, as before.
pub fn user_namespace_by_default(env: &Env) -> Res<()> {
    let api = &env.api;
    let volume = format!("userns-{}", crate::common::random_hex(4));
    let spec = with(
        sleeper_spec(env, "runc"),
        "volumes",
        json!([{"name": volume, "mount_path": "/data"}]),
    );
    let a = api.launch(spec.clone())?;
    let b = api.launch(with(spec, "env", json!({"SECOND": "1"})))?;
    let privileged = api.launch(with(
        sleeper_spec(env, "runc"),
        "privileged_user",
        json!(true),
    ))?;
    for pod in [&a, &b, &privileged] {
        api.wait_running(&pod.id)?;
    }
    let sh = |id: &str, line: &str| -> Res<String> {
        let out = api.cli(&["container", "exec", id, "--", "sh", "-c", line])?;
        ensure!(
            out.status.success(),
            "exec {line:?} in {id}: {}",
            out.combined()
        );
        Ok(out.stdout)
    };
    // uid_map: "<inside> <host> <count>".
    let host_start = |id: &str| -> Res<(u64, u64)> {
        let map = sh(id, "cat /proc/self/uid_map")?;
        let fields: Vec<u64> = map
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        ensure!(
            fields.len() == 3 && fields[0] == 0,
            "uid_map of {id}: {map:?}"
        );
        Ok((fields[1], fields[2]))
    };
    let (a_start, a_size) = host_start(&a.id)?;
    let (b_start, b_size) = host_start(&b.id)?;
    ensure!(
        a_start >= 1 << 20 && a_size == 65536 && b_start >= 1 << 20 && b_size == 65536,
        "a pod's root should map to an unprivileged host range of 65536 ids: {a_start}+{a_size}, {b_start}+{b_size}"
    );
    ensure!(
        a_start + a_size <= b_start || b_start + b_size <= a_start,
        "two pods should not share host ids: {a_start}+{a_size} and {b_start}+{b_size}"
    );
    let (p_start, p_size) = host_start(&privileged.id)?;
    ensure!(
        p_start == 0 && p_size == 4294967295,
        "a privileged_user pod should keep the host's ids, got {p_start}+{p_size}"
    );
    // On the host, the pod's sleep belongs to the range's first id, not to root.
    let owner = host_uid_of("/bin/sleep 3600", a_start)?;
    ensure!(
        owner == Some(a_start),
        "the pod's entrypoint should run as host uid {a_start} on the host, found {owner:?}"
    );
    // Inside, root owns the image's files and writes its volume; copied files belong to
    // the pod's user as the pod sees them.
    let seen = sh(
        &a.id,
        "stat -c %u /www/index.html; echo v > /data/by-root && stat -c %u /data/by-root",
    )?;
    ensure!(
        seen == "0\n0\n",
        "the pod's root should own its image files and its volume writes: {seen:?}"
    );
    let (status, body) = api.send(
        api.request(
            reqwest::Method::PUT,
            &format!("/v1/containers/{}/files?path=%2Ftmp%2Fcopied", a.id),
        )
        .body("c"),
        "upload into a pod with a user namespace",
    )?;
    ensure!(status == 201, "upload: {status} {body}");
    let copied = sh(&a.id, "stat -c %u:%g /tmp/copied")?;
    ensure!(
        copied == "0:0\n",
        "a copied file should be the pod root's: {copied:?}"
    );
    // The other pod, in another range, sees the volume's file as its own root's too.
    let other = sh(&b.id, "stat -c %u /data/by-root")?;
    ensure!(
        other == "0\n",
        "the volume file in the second pod: {other:?}"
    );
    for pod in [&a, &b, &privileged] {
        api.stop(&pod.id)?;
    }
    for pod in [&a, &b, &privileged] {
        api.wait_terminal(&pod.id, timeouts::STOP)?;
    }
    Ok(())
}

/// The host uid of the process whose command line is `cmdline` and whose uid is `uid`,
/// if there is one (`None` when no such process runs as that uid).
fn host_uid_of(cmdline: &str, uid: u64) -> Res<Option<u64>> {
    let want = cmdline.replace(' ', "\0");
    for entry in std::fs::read_dir("/proc")
        .map_err(|e| e.to_string())?
        .flatten()
    {
        let dir = entry.path();
        let Ok(line) = std::fs::read(dir.join("cmdline")) else {
            continue;
        };
        if !String::from_utf8_lossy(&line).starts_with(&want) {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let real = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok());
        if real == Some(uid) {
            return Ok(real);
        }
    }
    Ok(None)
}

pub fn read_only_rootfs_under_runc(env: &Env) -> Res<()> {
    read_only_rootfs(env, "runc")
}

pub fn read_only_rootfs_under_gvisor(env: &Env) -> Res<()> {
    read_only_rootfs(env, "gvisor")
}

/// `read_only_rootfs`: nothing in the pod can write its root filesystem, `/tmp` is a
/// writable tmpfs, and file copy refuses to write there too.
fn read_only_rootfs(env: &Env, runtime: &str) -> Res<()> {
    let api = &env.api;
    let pod = api.launch(with(
        sleeper_spec(env, runtime),
        "read_only_rootfs",
        json!(true),
    ))?;
    let running = api.wait_running(&pod.id)?;
    ensure!(
        running.read_only_rootfs,
        "the container should show read_only_rootfs: {}",
        pod.describe()
    );
    let out = api.cli(&[
        "container",
        "exec",
        &pod.id,
        "--",
        "sh",
        "-c",
        "touch /www/x 2>&1; echo made-root=$?; echo y > /tmp/y && cat /tmp/y",
    ])?;
    ensure!(
        out.stdout.contains("Read-only file system")
            && out.stdout.contains("made-root=1")
            && out.stdout.ends_with("y\n"),
        "under {runtime} the root filesystem should refuse writes and /tmp take them: {}",
        out.combined()
    );
    let (status, body) = api.send(
        api.request(
            reqwest::Method::PUT,
            &format!("/v1/containers/{}/files?path=%2Fwww%2Fz", pod.id),
        )
        .body("z"),
        "upload to a read-only root",
    )?;
    ensure!(
        status == 400 && body.contains("read-only"),
        "an upload onto the read-only root under {runtime}: {status} {body}"
    );
    api.stop(&pod.id)?;
    api.wait_terminal(&pod.id, timeouts::STOP)?;
    Ok(())
}

pub fn disk_fill_under_runc(env: &Env) -> Res<()> {
    disk_fill_is_capped(env, "runc")
}

pub fn disk_fill_under_gvisor(env: &Env) -> Res<()> {
    disk_fill_is_capped(env, "gvisor")
}

/// A pod with `disk: 64Mi` that writes 200 MiB gets "no space left on device" short of 64
/// MiB, and its end says its disk was full; the capped filesystem goes with it (the suite's
/// leak check finds no mount left).
fn disk_fill_is_capped(env: &Env, runtime: &str) -> Res<()> {
    let api = &env.api;
    let pod = api.launch(json!({
        "image": env.images.busybox,
        "entrypoint": ["sh", "-c", "dd if=/dev/zero of=/fill bs=1M count=200; ls -l /fill; exit 3"],
        "runtime": runtime,
        "disk": "64Mi",
    }))?;
    let ended = api.wait_terminal(&pod.id, timeouts::START)?;
    let log = api.logs(&pod.id)?;
    let written: u64 = log
        .split_whitespace()
        .filter_map(|w| w.parse::<u64>().ok())
        .filter(|n| *n > 1024 * 1024)
        .max()
        .unwrap_or(0);
    ensure!(
        ended.status == ContainerStatus::Exited
            && ended.exit_code == Some(3)
            && log.contains("No space left on device")
            && written > 0
            && written <= 64 * 1024 * 1024,
        "under {runtime} a 200 MiB write should stop at the 64 MiB cap ({written} bytes written): {}\n{log}",
        pod.describe()
    );
    let reason = ended.reason.unwrap_or_default();
    ensure!(
        reason.contains("64 MiB disk full") && ended.disk_mib == Some(64),
        "under {runtime} the end should say the disk was full: {reason:?}"
    );
    println!("{runtime}: {written} bytes fit in a 64 MiB disk; {reason}");
    Ok(())
}

/// A fork bomb stops at the pod's pids limit (runc), or takes down only its own sandbox
/// (gVisor, whose Sentry ends the pod when it runs out of room for tasks); either way the
/// server keeps answering and stopping or ending the pod leaves nothing behind (the suite's
/// leak check).
fn fork_bomb_is_held(env: &Env, runtime: &str) -> Res<()> {
    let api = &env.api;
    let spec = with(testapp_spec(env, &["forkbomb"]), "runtime", json!(runtime));
    let pod = api.launch(with(spec, "keep_warm_seconds", json!(-1)))?;
    let mut line = None;
    poll(timeouts::START, Duration::from_millis(500), || {
        let log = api.logs(&pod.id).ok()?;
        line = log
            .lines()
            .find(|l| l.contains("forkbomb: fork stopped"))
            .map(str::to_string);
        (line.is_some() || api.get(&pod.id).ok()?.status.is_terminal()).then_some(())
    })
    .ok_or_else(|| {
        format!(
            "the fork bomb neither stopped nor ended: {}",
            pod.describe()
        )
    })?;
    // The server answers while (or after) the pod holds its processes.
    let now = api.get(&pod.id)?;
    match line {
        Some(line) => {
            let children: u32 = line
                .split("after ")
                .nth(1)
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("unreadable fork bomb line: {line}"))?;
            println!("{runtime}: {line}");
            ensure!(
                children < 4096,
                "under {runtime} the fork bomb made {children} processes, past the pids limit of 4096"
            );
            api.stop(&pod.id)?;
            let done = api.wait_terminal(&pod.id, timeouts::STOP)?;
            ensure!(
                done.status == ContainerStatus::Stopped,
                "stopping the fork-bombing pod ended it as {}: {}",
                done.status,
                pod.describe()
            );
            // The pod reports what happened to it, not only that it was stopped.
            let reason = done.reason.unwrap_or_default();
            ensure!(
                reason.contains("hit its pids limit"),
                "the fork-bombing pod's end should name its pids limit: {reason:?}"
            );
        }
        None => {
            println!(
                "{runtime}: the fork bomb ended its own pod: {} ({:?})",
                now.status, now.reason
            );
            ensure!(
                runtime == "gvisor",
                "under {runtime} the fork bomb should stop at the pids limit, not end the pod: {}",
                pod.describe()
            );
            // The Sentry's own threads count against the pod's pids limit: the end says so.
            let ended = api.wait_terminal(&pod.id, timeouts::STOP)?;
            let reason = ended.reason.unwrap_or_default();
            ensure!(
                reason.contains("hit its pids limit"),
                "the fork bomb's end under gVisor should name its pids limit: {reason:?}"
            );
        }
    }
    Ok(())
}

pub fn fork_bomb_under_runc(env: &Env) -> Res<()> {
    fork_bomb_is_held(env, "runc")
}

pub fn fork_bomb_under_gvisor(env: &Env) -> Res<()> {
    fork_bomb_is_held(env, "gvisor")
}

/// A pod allocating past its memory limit under gVisor ends OOM_KILLED, as under runc
/// (`lifecycle::oom_killed`). The limit covers the whole sandbox, the Sentry included.
pub fn oom_killed_under_gvisor(env: &Env) -> Res<()> {
    let api = &env.api;
    let spec = with(testapp_spec(env, &["hog"]), "memory", json!(128));
    let spec = with(spec, "runtime", json!("gvisor"));
    let pod = api.launch(with(spec, "keep_warm_seconds", json!(-1)))?;
    let c = api.wait_terminal(&pod.id, timeouts::START)?;
    ensure!(
        c.status == ContainerStatus::OomKilled,
        "a gVisor pod allocating past its 128 MiB limit ended as {} ({:?}), expected OOM_KILLED\n{}",
        c.status,
        c.reason,
        pod.describe()
    );
    Ok(())
}
