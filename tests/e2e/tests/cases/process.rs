//! What the pod's process sees of itself: its user and working directory from the image,
//! and the cgroup limits from the request.

use serde_json::json;

use super::{testapp_spec, with};
use crate::common::harness::Env;
use crate::common::images::{IMAGE_USER, IMAGE_USER_UID, IMAGE_WORKDIR};
use crate::common::{indent, Res};
use crate::ensure;

/// The pod's own cgroup files (its cgroup namespace makes its cgroup the root; the host has
/// cgroup v1 with one hierarchy per controller).
const CPU_QUOTA: &str = "/sys/fs/cgroup/cpu/cpu.cfs_quota_us";
const CPU_PERIOD: &str = "/sys/fs/cgroup/cpu/cpu.cfs_period_us";
const PIDS_MAX: &str = "/sys/fs/cgroup/pids/pids.max";
/// Shown when a limit is not where expected, to tell a wrong value from a moved file.
const CGROUP_CONTEXT: [&str; 4] = [
    "/sys/fs/cgroup",
    "/sys/fs/cgroup/cpu",
    "/sys/fs/cgroup/pids",
    "/proc/self/cgroup",
];

/// The `uid=... gid=... cwd=...` line of a testapp answer to `?whoami`.
fn whoami_line(body: &str) -> Option<&str> {
    body.lines().find(|l| l.starts_with("uid="))
}

/// What the testapp reported for `?read=path`: the content, or its error line.
fn read_value<'a>(body: &'a str, path: &str) -> Result<&'a str, String> {
    if let Some(value) = body
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{path}=")))
    {
        return Ok(value);
    }
    match body.lines().find(|l| l.starts_with(&format!("{path} "))) {
        Some(line) => Err(line.to_string()),
        None => Err(format!("{path}: not in the answer")),
    }
}

pub fn image_user_and_workdir(env: &Env) -> Res<()> {
    let api = &env.api;
    let image = env.images.user_workdir.as_str();
    let pod = api.launch(json!({"image": image, "ports": [8080]}))?;
    api.wait_running(&pod.id)?;
    let body = pod.wait_http_ok(8080, "/?whoami")?;
    let line = whoami_line(&body).ok_or_else(|| {
        format!(
            "the testapp answered ?whoami without a uid= line:\n{}",
            indent(&body)
        )
    })?;
    let want = format!("uid={IMAGE_USER_UID} gid={IMAGE_USER_UID} cwd={IMAGE_WORKDIR}");
    ensure!(
        line == want,
        "the image config says User {IMAGE_USER:?} (uid and gid {IMAGE_USER_UID} in its \
         /etc/passwd) and WorkingDir {IMAGE_WORKDIR:?}, but the pod's process reports {line:?}, \
         expected {want:?}"
    );
    Ok(())
}

/// `cpu: "500m"` becomes a CFS quota of half the period, and every pod gets a pids limit.
pub fn cpu_and_pids_limits(env: &Env) -> Res<()> {
    let api = &env.api;
    let spec = with(testapp_spec(env, &["http", "8080"]), "cpu", json!("500m"));
    let pod = api.launch(spec)?;
    ensure!(
        pod.created.cpu_millis == 500,
        "cpu \"500m\" was recorded as {} millicores",
        pod.created.cpu_millis
    );
    api.wait_running(&pod.id)?;
    let query = format!("/?read={CPU_QUOTA}&read={CPU_PERIOD}&read={PIDS_MAX}");
    let body = pod.wait_http_ok(8080, &query)?;
    let expected = [
        (
            CPU_QUOTA,
            "50000",
            "cpu 500m is half of the 100000us period",
        ),
        (CPU_PERIOD, "100000", "the CFS period"),
        (PIDS_MAX, "4096", "the default pids limit"),
    ];
    let mut wrong = Vec::new();
    for (path, want, why) in expected {
        match read_value(&body, path) {
            Ok(value) if value == want => {}
            Ok(value) => wrong.push(format!("{path} is {value:?}, expected {want} ({why})")),
            Err(e) => wrong.push(e),
        }
    }
    if wrong.is_empty() {
        return Ok(());
    }
    let query: Vec<String> = CGROUP_CONTEXT.iter().map(|p| format!("read={p}")).collect();
    let context = match api.ingress_get(&format!("{}/?{}", pod.url(8080)?, query.join("&"))) {
        Ok((_, body)) => body,
        Err(e) => format!("(cannot ask the pod: {e})"),
    };
    Err(format!(
        "the pod's cgroup does not carry its limits:\n  {}\nwhat the pod sees:\n{}",
        wrong.join("\n  "),
        indent(&context)
    ))
}
