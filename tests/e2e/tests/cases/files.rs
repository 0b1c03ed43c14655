//! Files in and out of a running pod, under each runtime: `berth container cp` both ways
//! (mode kept, the pod seeing the upload at once), the SDK's `instance.fs`, and the escapes
//! a hostile pod sets up for whoever copies from it: symlinks (absolute and relative) to the
//! host's files and directories, `..`, and the pod's `/proc`. None may read or write the host.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use reqwest::blocking::RequestBuilder;
use reqwest::Method;

use super::sleeper_spec;
use crate::common::client::Api;
use crate::common::harness::Env;
use crate::common::{random_hex, timeouts, url_encode, Context, Res};
use crate::ensure;

pub fn files_under_runc(env: &Env) -> Res<()> {
    files_move_in_and_out(env, "runc")
}

pub fn files_under_gvisor(env: &Env) -> Res<()> {
    files_move_in_and_out(env, "gvisor")
}

fn files_move_in_and_out(env: &Env, runtime: &str) -> Res<()> {
    let api = &env.api;
    let pod = api.launch(sleeper_spec(env, runtime))?;
    api.wait_running(&pod.id)?;
    let here = tempfile::tempdir().ctx("tempdir")?;

    // In: the CLI keeps the name and the mode, and the pod sees the file at once.
    let local = here.path().join("greeting.txt");
    std::fs::write(&local, "hello from the host\n").ctx("write")?;
    std::fs::set_permissions(&local, std::fs::Permissions::from_mode(0o640)).ctx("chmod")?;
    let out = api.cli(&[
        "container",
        "cp",
        &local.display().to_string(),
        &format!("{}:/tmp/", pod.id),
    ])?;
    ensure!(
        out.status.success() && out.stdout.contains("/tmp/greeting.txt"),
        "cp into the {runtime} pod: {}",
        out.combined()
    );
    let seen = sh(
        api,
        &pod.id,
        "cat /tmp/greeting.txt; stat -c %a /tmp/greeting.txt",
    )?;
    ensure!(
        seen == "hello from the host\n640\n",
        "the {runtime} pod should see the upload with mode 640, saw {seen:?}"
    );

    // Out: what the pod wrote, whole, into a local directory under its own name.
    sh(api, &pod.id, "seq 1 20000 > /tmp/made.txt")?;
    let out = api.cli(&[
        "container",
        "cp",
        &format!("{}:/tmp/made.txt", pod.id),
        &format!("{}/", here.path().display()),
    ])?;
    let made = std::fs::read_to_string(here.path().join("made.txt")).unwrap_or_default();
    let want: String = (1..=20000).map(|n| format!("{n}\n")).collect();
    ensure!(
        out.status.success() && made == want,
        "cp out of the {runtime} pod gave {} bytes of {}: {}",
        made.len(),
        want.len(),
        out.combined()
    );

    // The SDK: write, read back, list.
    let code = format!(
        "import berth, json\n\
         c = berth.client.Client()\n\
         p = berth.PodInstance(c, c.call('GET', '/v1/containers/{id}'), True)\n\
         p.fs.write('/tmp/sdk.txt', 'from the sdk')\n\
         names = sorted(e.name for e in p.fs.list('/tmp') if not e.is_dir)\n\
         print(json.dumps([p.fs.read('/tmp/sdk.txt').decode(), names]))\n",
        id = pod.id
    );
    let sdk = api.python(here.path(), &["-c", &code])?;
    let want = r#"["from the sdk", ["greeting.txt", "made.txt", "sdk.txt"]]"#;
    ensure!(
        sdk.status.success() && sdk.stdout.trim() == want,
        "the SDK's fs under {runtime} should give {want}: {}",
        sdk.combined()
    );

    escapes_stay_in_the_pod(api, &pod.id, runtime, here.path())?;
    directories_move_in_and_out(api, &pod.id, runtime, here.path())?;

    // Not running any more: a clear 409.
    api.stop(&pod.id)?;
    api.wait_terminal(&pod.id, timeouts::STOP)?;
    let (status, body) = files(api, Method::GET, &pod.id, "/tmp/made.txt")?;
    ensure!(
        status == 409 && body.contains("not RUNNING"),
        "reading a stopped pod's file: {status} {body}"
    );
    Ok(())
}

/// Links a hostile pod plants toward the host's files: every one resolves inside the pod
/// (so leads nowhere), and the host's secret and directory are untouched.
fn escapes_stay_in_the_pod(api: &Api, id: &str, runtime: &str, here: &Path) -> Res<()> {
    let tag = random_hex(4);
    let secret = format!("/tmp/berth-files-secret-{tag}");
    let host_dir = format!("/tmp/berth-files-dir-{tag}");
    let _cleanup = Remove(vec![secret.clone(), host_dir.clone()]);
    std::fs::write(&secret, format!("host secret {tag}")).ctx("write the host secret")?;
    std::fs::create_dir(&host_dir).ctx("make the host directory")?;
    sh(
        api,
        id,
        &format!(
            "ln -s {secret} /leak-abs && ln -s ../../../../../../..{secret} /tmp/leak-rel && \
             ln -s {host_dir} /tmp/into-host && ln -s /tmp/greeting.txt /tmp/inside"
        ),
    )?;

    for path in ["/leak-abs", "/tmp/leak-rel"] {
        let (status, body) = files(api, Method::GET, id, path)?;
        ensure!(
            status == 404 && !body.contains("host secret"),
            "reading {path} (a link to the host's {secret}) under {runtime}: {status} {body}"
        );
    }
    let out = api.cli(&[
        "container",
        "cp",
        &format!("{id}:/leak-abs"),
        &here.join("stolen").display().to_string(),
    ])?;
    ensure!(
        !out.status.success() && !here.join("stolen").exists(),
        "cp out through a planted link under {runtime}: {}",
        out.combined()
    );

    let (status, body) = send(
        api,
        api.request(Method::PUT, &files_path(id, "/tmp/into-host/planted"))
            .body("planted"),
    )?;
    let planted = std::fs::read_dir(&host_dir).map(|d| d.count()).unwrap_or(0);
    ensure!(
        status == 404 && planted == 0,
        "writing through a link to the host's {host_dir} under {runtime}: {status} {body}; {planted} files there"
    );
    ensure!(
        std::fs::read_to_string(&secret).ctx("read the secret")? == format!("host secret {tag}"),
        "the host's secret changed"
    );

    for (path, want) in [
        ("/tmp/../etc/passwd", 400),
        ("tmp/made.txt", 400),
        ("/proc/1/environ", 400),
        ("/tmp", 400),
    ] {
        let (status, body) = files(api, Method::GET, id, path)?;
        ensure!(
            status == want,
            "reading {path:?} under {runtime} should be {want}: {status} {body}"
        );
    }
    // A link that stays in the pod is followed, as in the pod.
    let (status, body) = files(api, Method::GET, id, "/tmp/inside")?;
    ensure!(
        status == 200 && body == "hello from the host\n",
        "a link inside the pod under {runtime}: {status} {body}"
    );
    Ok(())
}

/// A directory tree both ways: in under its own name into an existing directory, with
/// modes kept and a local symlink skipped; out as a new local directory, where the links
/// the pod planted toward the host (see above) are skipped, not followed.
fn directories_move_in_and_out(api: &Api, id: &str, runtime: &str, here: &Path) -> Res<()> {
    let tree = here.join("tree");
    std::fs::create_dir_all(tree.join("sub/deeper")).ctx("mkdir")?;
    std::fs::write(tree.join("a.txt"), "a\n").ctx("write")?;
    std::fs::write(tree.join("sub/b.sh"), "echo b\n").ctx("write")?;
    std::fs::set_permissions(
        tree.join("sub/b.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .ctx("chmod")?;
    std::fs::write(tree.join("sub/deeper/c.txt"), "c\n").ctx("write")?;
    std::os::unix::fs::symlink("/etc/passwd", tree.join("link")).ctx("symlink")?;
    let out = api.cli(&[
        "container",
        "cp",
        &tree.display().to_string(),
        &format!("{id}:/tmp"),
    ])?;
    ensure!(
        out.status.success() && out.stdout.contains("Copied 3 files in 3 directories"),
        "cp of a directory into the {runtime} pod: {}",
        out.combined()
    );
    let seen = sh(
        api,
        id,
        "cat /tmp/tree/a.txt /tmp/tree/sub/deeper/c.txt; stat -c %a /tmp/tree/sub/b.sh; \
         test -e /tmp/tree/link || echo no link",
    )?;
    ensure!(
        seen == "a\nc\n755\nno link\n",
        "the {runtime} pod should see the tree with b.sh 755 and no link, saw {seen:?}"
    );

    let copy = here.join("copy-of-tmp");
    let out = api.cli(&[
        "container",
        "cp",
        &format!("{id}:/tmp"),
        &copy.display().to_string(),
    ])?;
    let read = |p: &str| std::fs::read_to_string(copy.join(p)).unwrap_or_default();
    ensure!(
        out.status.success()
            && read("tree/sub/deeper/c.txt") == "c\n"
            && read("greeting.txt") == "hello from the host\n",
        "cp of the {runtime} pod's /tmp out: {}",
        out.combined()
    );
    let mode = std::fs::metadata(copy.join("tree/sub/b.sh"))
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    ensure!(mode == 0o755, "b.sh came out with mode {mode:o}");
    // The SDK's fs does the same both ways.
    let code = format!(
        "import berth, json, os\n\
         c = berth.client.Client()\n\
         p = berth.PodInstance(c, c.call('GET', '/v1/containers/{id}'), True)\n\
         sent = p.fs.upload('{tree}', '/tmp/sdk-tree')\n\
         got = p.fs.download('/tmp/sdk-tree', 'sdk-out')\n\
         print(json.dumps([sent, got, open('sdk-out/sub/deeper/c.txt').read(), \
         os.path.lexists('sdk-out/link')]))\n",
        tree = tree.display()
    );
    let sdk = api.python(here, &["-c", &code])?;
    ensure!(
        sdk.status.success() && sdk.stdout.trim() == r#"[11, 11, "c\n", false]"#,
        "the SDK's fs with a directory under {runtime}: {}",
        sdk.combined()
    );
    for link in ["leak-rel", "into-host", "inside"] {
        ensure!(
            std::fs::symlink_metadata(copy.join(link)).is_err()
                && out
                    .stderr
                    .contains(&format!("/tmp/{link} (not a regular file")),
            "the pod's link /tmp/{link} should be skipped with a note under {runtime}: {}",
            out.combined()
        );
    }
    Ok(())
}

/// Runs a shell line in the pod; its stdout, or the failure.
fn sh(api: &Api, id: &str, line: &str) -> Res<String> {
    let out = api.cli(&["container", "exec", id, "--", "sh", "-c", line])?;
    ensure!(out.status.success(), "exec {line:?}: {}", out.combined());
    Ok(out.stdout)
}

fn files_path(id: &str, path: &str) -> String {
    format!("/v1/containers/{id}/files?path={}", url_encode(path))
}

fn files(api: &Api, method: Method, id: &str, path: &str) -> Res<(u16, String)> {
    send(api, api.request(method, &files_path(id, path)))
}

fn send(api: &Api, req: RequestBuilder) -> Res<(u16, String)> {
    let (status, body) = api.send(req, "files request")?;
    Ok((status.as_u16(), body))
}

/// Removes the host files a test made, however it ends.
struct Remove(Vec<String>);

impl Drop for Remove {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_dir_all(path).or_else(|_| std::fs::remove_file(path));
        }
    }
}
