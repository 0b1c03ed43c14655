//! The product guide's examples, run as written with `from berth import Image, Pod` and the
//! `berth` CLI. `jupyter/base-notebook:latest` resolves through the server's Docker Hub
//! mirror to an image the suite builds itself from PyPI's `notebook` on berth's default base.

use std::path::Path;
use std::sync::Mutex;

use reqwest::StatusCode;

use crate::common::client::{created_id, CliOutput};
use crate::common::harness::Env;
use crate::common::{random_hex, timeouts, Res};
use crate::ensure;

/// The guide's notebook example, with `berth` for `beam`.
const NOTEBOOK_APP: &str = r#"from berth import Image, Pod

notebook = Pod(
    image=Image(base_image="jupyter/base-notebook:latest"),
    ports=[8888],
    cpu=1,
    memory=1024,
    env={
        "NOTEBOOK_ARGS": "--ip=:: --NotebookApp.token='' --NotebookApp.notebook_dir=/tmp"
    },
    entrypoint=["start-notebook.py"],
)

nb = notebook.create()

print("✨ Container hosted at:", nb.url)
"#;

const CUSTOM_IMAGE_APP: &str = r#"from berth import Image, Pod

pod = Pod(
    image=Image(base_image="jupyter/base-notebook:latest"),
    entrypoint=["start-notebook.py"],
)
"#;

const ENTRYPOINT_APP: &str = r#"from berth import Image, Pod

pod = Pod(
    image=Image(base_image="jupyter/base-notebook:latest"),
    entrypoint=["start-notebook.py"],
)

pod.create()
"#;

const ENV_APP: &str = r#"from berth import Image, Pod

Pod(
    image=Image(base_image="jupyter/base-notebook:latest"),
    env={"NOTEBOOK_ARGS": "--ip=:: --NotebookApp.token='' --NotebookApp.notebook_dir=/tmp"},
    entrypoint=["start-notebook.py"],
)
"#;

const DEPLOY_APP: &str = r#"from berth import Pod

pod = Pod(
    name="my-deployed-pod",
    cpu=2,
    memory="1Gi",
    ports=[8000],
    entrypoint=["python", "-m", "http.server", "8000"],
)
"#;

const TERMINATE_APP: &str = r#"from berth import Pod

# Initialize a pod
notebook = Pod()

# Launch the pod
notebook.create()

# Terminate the pod
notebook.terminate()
"#;

/// `start-notebook.py` as the Jupyter images have it: the server on all addresses (their
/// config's default), then `$NOTEBOOK_ARGS`, which may override it.
const START_NOTEBOOK: &str = r#"#!/usr/bin/env python3
import os, shlex, sys
args = shlex.split(os.environ.get("NOTEBOOK_ARGS", "")) + sys.argv[1:]
if not any(a.startswith("--ip") for a in args):
    args.insert(0, "--ip=0.0.0.0")
os.execvp("jupyter", ["jupyter", "notebook", "--allow-root", "--no-browser", *args])
"#;

/// Built once per suite; every notebook test waits for the first to finish it.
static NOTEBOOK_IMAGE: Mutex<Option<Result<(), String>>> = Mutex::new(None);

/// Builds `jupyter/base-notebook:latest` into the suite's registry (where the mirror of
/// docker.io sends pulls of it), with `start-notebook.py` as its command and 8888 exposed.
pub fn notebook_image(env: &Env) -> Res<()> {
    let mut done = NOTEBOOK_IMAGE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(result) = done.as_ref() {
        return result.clone();
    }
    let result = build_notebook_image(env);
    *done = Some(result.clone());
    result
}

fn build_notebook_image(env: &Env) -> Res<()> {
    let script = START_NOTEBOOK.replace('\'', r"'\''");
    let install = format!(
        "printf '%s' '{script}' > /usr/local/bin/start-notebook.py && chmod 755 /usr/local/bin/start-notebook.py"
    );
    let target = format!("{}/jupyter/base-notebook:latest", env.registry.addr);
    let out = env.api.cli(&[
        "image",
        "build",
        "--python-packages",
        "notebook",
        "--command",
        &install,
        "--push",
        &target,
    ])?;
    ensure!(
        out.status.success(),
        "building the notebook image failed:\n{}",
        out.show()
    );
    env.registry.set_command(
        "jupyter/base-notebook",
        "latest",
        &["start-notebook.py"],
        &[8888],
    )
}

/// A fresh directory with `app.py` holding `source`, for running an example in.
fn app_dir(source: &str) -> Res<tempfile::TempDir> {
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    std::fs::write(dir.path().join("app.py"), source).map_err(|e| format!("app.py: {e}"))?;
    Ok(dir)
}

/// Runs `python3 app.py` in `dir`; the pod it printed is stopped when the test ends.
fn run_app(env: &Env, dir: &Path) -> Res<(CliOutput, Option<String>)> {
    let out = env.api.python(dir, &["app.py"])?;
    ensure!(
        out.status.success(),
        "python3 app.py failed:\n{}",
        out.show()
    );
    ensure!(
        !out.combined().contains("Traceback"),
        "python3 app.py printed a traceback:\n{}",
        out.show()
    );
    let id = created_id(&out.stdout);
    Ok((out, id))
}

/// The lines of `text` that start with one of the guide's progress markers, in order.
fn progress(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with("=> "))
        .map(|l| l.split(" ===>").next().unwrap_or(l).to_string())
        .collect()
}

pub fn notebook_pod(env: &Env) -> Res<()> {
    notebook_image(env)?;
    let dir = app_dir(NOTEBOOK_APP)?;
    let (out, id) = run_app(env, dir.path())?;
    let id = id.ok_or_else(|| format!("no container id printed:\n{}", out.show()))?;
    let _pod = env.api.adopt(&id)?;
    let lines = progress(&out.stdout);
    for expected in [
        "=> Building image",
        "=> Syncing files",
        "=> Creating container",
        "=> Container created successfully",
    ] {
        ensure!(
            lines.iter().any(|l| l == expected),
            "the output lacks {expected:?}:\n{}",
            out.show()
        );
    }
    let url = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("✨ Container hosted at: "))
        .ok_or_else(|| format!("no URL printed:\n{}", out.show()))?
        .trim()
        .to_string();
    ensure!(
        url.contains("-8888.berth.test"),
        "the URL {url} is not the pod's port 8888"
    );
    // The notebook server answers through the ingress, with the token turned off.
    let body = env
        .api
        .wait_http_ok(&format!("{url}/api"), timeouts::START)
        .map_err(|e| format!("{e}\n{}", env.api.describe(&id)))?;
    ensure!(body.contains("\"version\""), "GET /api answered {body}");
    let (status, body) = env.api.ingress_get(&format!("{url}/api/contents"))?;
    ensure!(
        status == StatusCode::OK,
        "GET /api/contents answered {status} (is the token off?): {body}"
    );
    Ok(())
}

/// The custom-image and env-var examples define a Pod; the entry-point one creates it.
pub fn image_entrypoint_and_env_examples(env: &Env) -> Res<()> {
    notebook_image(env)?;
    for source in [CUSTOM_IMAGE_APP, ENV_APP] {
        let dir = app_dir(source)?;
        let (out, id) = run_app(env, dir.path())?;
        ensure!(
            id.is_none() && out.stdout.trim().is_empty(),
            "defining a Pod created something:\n{}",
            out.show()
        );
    }
    let dir = app_dir(ENTRYPOINT_APP)?;
    let (out, id) = run_app(env, dir.path())?;
    let id = id.ok_or_else(|| format!("no container id printed:\n{}", out.show()))?;
    let _pod = env.api.adopt(&id)?;
    // No ports: the id is printed, no URL.
    ensure!(
        !out.stdout.contains("hosted at"),
        "a pod without ports printed a URL:\n{}",
        out.show()
    );
    env.api.wait_running(&id)?;
    let seen = crate::common::poll(
        timeouts::START,
        std::time::Duration::from_millis(500),
        || {
            env.api
                .logs(&id)
                .ok()
                .filter(|l| l.contains("Jupyter"))
                .map(|_| ())
        },
    );
    ensure!(
        seen.is_some(),
        "the entrypoint start-notebook.py did not start Jupyter:\n{}",
        env.api.describe(&id)
    );
    Ok(())
}

/// `berth deploy app.py:pod` with the guide's http.server pod: the deployment serves the
/// synced directory at `my-deployed-pod-8000.<domain>`.
pub fn deploy_http_server(env: &Env) -> Res<()> {
    let dir = app_dir(DEPLOY_APP)?;
    let marker = format!("synced-{}.txt", random_hex(4));
    std::fs::write(dir.path().join(&marker), "hello").map_err(|e| e.to_string())?;
    let _cleanup = DeploymentGuard {
        env,
        name: "my-deployed-pod",
    };
    let out = env.api.cli_in(dir.path(), &["deploy", "app.py:pod"])?;
    ensure!(out.status.success(), "berth deploy failed:\n{}", out.show());
    let url = format!(
        "http://my-deployed-pod-8000.{}:{}/",
        crate::common::server::DOMAIN,
        env.api.ingress.port()
    );
    ensure!(
        out.stdout.contains(url.trim_end_matches('/')),
        "berth deploy did not print the stable URL {url}:\n{}",
        out.show()
    );
    let listing = env.api.wait_http_ok(&url, timeouts::HTTP_READY)?;
    ensure!(
        listing.contains(&marker) && listing.contains("app.py"),
        "the deployed http.server does not list the synced directory: {listing}"
    );
    let list = env.api.cli(&["container", "list"])?;
    ensure!(
        list.stdout.contains("my-deployed-pod-v1"),
        "container list does not show the deployment id:\n{}",
        list.show()
    );
    let deployments = env.api.cli(&["deployment", "list"])?;
    ensure!(
        deployments.stdout.contains("my-deployed-pod") && deployments.stdout.contains("v1"),
        "deployment list:\n{}",
        deployments.show()
    );
    Ok(())
}

/// Deletes a deployment when the test ends, however it ends.
pub struct DeploymentGuard<'a> {
    pub env: &'a Env,
    pub name: &'a str,
}

impl Drop for DeploymentGuard<'_> {
    fn drop(&mut self) {
        let _ = self.env.api.cli(&["deployment", "delete", self.name]);
        // Its containers stop in the background; wait so no test sees them linger.
        let name = self.name.to_string();
        let _ = crate::common::poll(
            timeouts::STOP,
            std::time::Duration::from_millis(250),
            || {
                let live = self.env.api.list(false).ok()?;
                (!live.iter().any(|c| {
                    c.deployment_id
                        .as_deref()
                        .is_some_and(|d| d.starts_with(&format!("{name}-v")))
                }))
                .then_some(())
            },
        );
    }
}

pub fn create_then_terminate(env: &Env) -> Res<()> {
    let dir = app_dir(TERMINATE_APP)?;
    let (out, id) = run_app(env, dir.path())?;
    let id = id.ok_or_else(|| format!("no container id printed:\n{}", out.show()))?;
    let _pod = env.api.adopt(&id)?;
    let ended = env.api.wait_terminal(&id, timeouts::STOP)?;
    ensure!(
        ended.status == berth_api::ContainerStatus::Stopped,
        "after terminate() the pod is {}: {:?}",
        ended.status,
        ended.reason
    );
    Ok(())
}

/// `berth run --image jupyter/base-notebook:latest --keep-warm-seconds 300`, then
/// `berth container list` and `berth container stop <id>`.
pub fn cli_run_list_stop(env: &Env) -> Res<()> {
    notebook_image(env)?;
    let out = env.api.cli(&[
        "run",
        "--image",
        "jupyter/base-notebook:latest",
        "--keep-warm-seconds",
        "300",
    ])?;
    ensure!(out.status.success(), "berth run failed:\n{}", out.show());
    let id = created_id(&out.stdout).ok_or_else(|| format!("no id:\n{}", out.show()))?;
    let pod = env.api.adopt(&id)?;
    ensure!(pod.get()?.keep_warm_seconds == 300, "keep-warm is not 300");
    pod.wait_http_ok(8888, "/api")?;
    let list = env.api.cli(&["container", "list"])?;
    ensure!(
        list.stdout
            .lines()
            .any(|l| l.contains(&id) && l.contains("RUNNING")),
        "container list does not show {id} RUNNING:\n{}",
        list.show()
    );
    let stop = env.api.cli(&["container", "stop", &id])?;
    ensure!(stop.status.success(), "container stop:\n{}", stop.show());
    ensure!(
        env.api.get(&id)?.status.is_terminal(),
        "{id} is not stopped after container stop"
    );
    Ok(())
}

/// `berth run app.py:pod` runs a Pod from a module; bad targets, unknown parameters and a
/// wrong token are one-line errors with no traceback.
pub fn module_runner_and_bad_input(env: &Env) -> Res<()> {
    let dir = app_dir(
        r#"from berth import Pod

web = Pod(ports=[8000], entrypoint=["python", "-m", "http.server", "8000"], keep_warm_seconds=60)
"#,
    )?;
    let out = env.api.cli_in(dir.path(), &["run", "app.py:web"])?;
    ensure!(
        out.status.success(),
        "berth run app.py:web:\n{}",
        out.show()
    );
    let id = created_id(&out.stdout).ok_or_else(|| format!("no id:\n{}", out.show()))?;
    let _pod = env.api.adopt(&id)?;
    let url = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("✨ Container hosted at: "))
        .ok_or_else(|| format!("no URL:\n{}", out.show()))?
        .trim()
        .to_string();
    let listing = env.api.wait_http_ok(&url, timeouts::HTTP_READY)?;
    ensure!(
        listing.contains("app.py"),
        "the pod does not serve /mnt/code: {listing}"
    );

    let one_line_error = |out: &CliOutput, expected: &str| -> Res<()> {
        let err = out.stderr.trim();
        ensure!(
            !out.status.success()
                && err.lines().count() == 1
                && err.contains(expected)
                && !out.combined().contains("Traceback"),
            "expected a one-line error naming {expected:?}:\n{}",
            out.show()
        );
        Ok(())
    };
    let out = env.api.cli_in(dir.path(), &["deploy", "app.py:nope"])?;
    one_line_error(&out, "app.py has no `nope`; Pods defined there: web")?;
    let out = env.api.cli_in(dir.path(), &["deploy", "missing.py:pod"])?;
    one_line_error(&out, "no such file")?;
    let out = env
        .api
        .cli_in(dir.path(), &["deploy", "app.py:web", "--name", "Bad_Name"])?;
    one_line_error(&out, "not a valid deployment name")?;
    std::fs::write(
        dir.path().join("typo.py"),
        "from berth import Pod\npod = Pod(cpus=2)\n",
    )
    .map_err(|e| e.to_string())?;
    let out = env.api.cli_in(dir.path(), &["deploy", "typo.py:pod"])?;
    one_line_error(&out, "Pod() has no parameter 'cpus'; did you mean 'cpu'?")?;
    let out = env.api.cli_with_token_in(
        dir.path(),
        &["deploy", "app.py:web", "--name", "web"],
        "wrong",
    )?;
    one_line_error(&out, "refused the token")?;
    Ok(())
}
