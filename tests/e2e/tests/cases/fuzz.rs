//! The API fuzzed from its own OpenAPI document with schemathesis (PyPI, installed by
//! `scripts/install.sh`): a bounded run of generated and boundary-value requests to every
//! operation against a server of its own, holding a running pod that the file and exec
//! operations aim at. Any 5xx fails the test, as does a server that stops answering, and
//! everything the run created is stopped and deleted before the server is (the suite's leak
//! check then finds nothing left).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::client::Api;
use crate::common::harness::{link_exists, own_server_dir, stop_leftovers, Env};
use crate::common::server::{PodNetwork, Server};
use crate::common::{command_output, poll, url_encode, Context, Res};
use crate::ensure;

const NETWORK: PodNetwork = PodNetwork {
    bridge: "berthtest8",
    subnet_v4: "10.221.0.0/16",
    subnet_v6: None,
};

/// Where `scripts/install.sh --deps-only` puts it.
const SCHEMATHESIS: &str = "/opt/berth-test-tools/venv/bin/schemathesis";

/// Generated requests per operation and phase: enough to reach every validation branch in a
/// minute or two on a busy machine.
const MAX_EXAMPLES: &str = "25";

/// Hooks that keep the run on the API's own behaviour: image build specs (each would
/// bootstrap a Debian root filesystem) become a reference to a registry that refuses at
/// once, code uploads are sent as the gzip they are declared as, and the file and exec
/// operations aim at the running pod (else they would meet only 404s).
const HOOKS: &str = r#"
import gzip
import os

import schemathesis


@schemathesis.hook
def map_body(ctx, body):
    if isinstance(body, dict) and isinstance(body.get("image"), dict):
        body = dict(body, image="127.0.0.1:9/fuzz:latest")
    return body


@schemathesis.hook
def map_path_parameters(ctx, path_parameters):
    path = ctx.operation.path
    if path_parameters and ("/files" in path or path.endswith("/exec")):
        path_parameters = dict(path_parameters, id=os.environ["BERTH_FUZZ_POD"])
    return path_parameters


@schemathesis.serializer("application/gzip")
def gzip_bytes(ctx, value):
    raw = value if isinstance(value, bytes) else repr(value).encode()
    return gzip.compress(raw)
"#;

pub fn openapi_fuzzed_with_schemathesis(env: &Env) -> Res<()> {
    ensure!(
        Path::new(SCHEMATHESIS).exists(),
        "{SCHEMATHESIS} is missing: run scripts/install.sh --deps-only"
    );
    let dir = own_server_dir(env, &NETWORK, "fuzz")?;
    let server = Server::start_with_args(&dir, &env.registry.host(), NETWORK, &[])?;
    let api = Api::new(&server)?;
    let outcome = fuzz(env, &server, &api, &dir);
    let cleaned = clean_up(&api);
    let exited = server.stop();
    if poll(Duration::from_secs(5), Duration::from_millis(100), || {
        (!link_exists(NETWORK.bridge)).then_some(())
    })
    .is_none()
    {
        let _ = command_output("ip", &["link", "del", NETWORK.bridge]);
    }
    outcome.map_err(|e| server.with_log(e))?;
    cleaned.map_err(|e| server.with_log(e))?;
    exited
}

fn fuzz(env: &Env, server: &Server, api: &Api, dir: &Path) -> Res<()> {
    let pod = api.launch(json!({
        "image": env.images.busybox,
        "entrypoint": ["/bin/sleep", "3600"],
    }))?;
    api.wait_running(&pod.id)?;
    let hooks = dir.join("fuzz_hooks.py");
    std::fs::write(&hooks, HOOKS).ctx("write the schemathesis hooks")?;
    let report = dir.join("schemathesis.log");
    let out = Command::new("timeout")
        .arg("600")
        .arg(SCHEMATHESIS)
        .arg("run")
        .arg(format!("{}/openapi.json", server.gateway))
        .args(["-H", &format!("Authorization: Bearer {}", server.token)])
        .args(["--checks", "not_a_server_error"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", MAX_EXAMPLES])
        // One worker: hypothesis describes strategies by parsing Python source, which is
        // not thread-safe on CPython 3.11 ("AST constructor recursion depth mismatch").
        .args(["--workers", "1", "--request-timeout", "20", "--no-color"])
        // Streams that last as long as a container or a build: not request/response.
        .args(["--exclude-path-regex", "/logs$"])
        .args(["--exclude-path", "/v1/images/build"])
        // Prune removes every image not in use; nothing about it to fuzz.
        .args(["--exclude-path", "/v1/images/prune"])
        .env("PYTHONPATH", dir)
        .env("SCHEMATHESIS_HOOKS", "fuzz_hooks")
        .env("BERTH_FUZZ_POD", &pod.id)
        .env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1")
        .current_dir(dir)
        .output()
        .ctx("run schemathesis")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::write(&report, &text);
    ensure!(
        out.status.success(),
        "schemathesis found problems (exit {:?}; full output in {}):\n{}",
        out.status.code(),
        report.display(),
        failures(&text)
    );
    let summary = text
        .lines()
        .find(|l| l.contains(" generated, "))
        .unwrap_or("no summary")
        .trim();
    println!("fuzz: {summary}");
    // Still answering, and the pod it aimed at is still the pod it was.
    let (status, _) = api.send(api.request(Method::GET, "/healthz"), "healthz")?;
    ensure!(
        status == 200,
        "the server answers /healthz with {status} after the fuzzing"
    );
    api.get(&pod.id)?;
    Ok(())
}

/// The failures and errors sections of schemathesis's output, or its last lines.
fn failures(text: &str) -> String {
    let start = text
        .find("= FAILURES =")
        .or_else(|| text.find("= ERRORS ="))
        .unwrap_or(text.len().saturating_sub(4000));
    let start = (0..=start)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    text[start..].chars().take(8000).collect()
}

/// Stops every container and deletes every deployment the run left.
fn clean_up(api: &Api) -> Res<()> {
    let (_, body) = api.send(
        api.request(Method::GET, "/v1/deployments"),
        "list deployments",
    )?;
    let list: Value = serde_json::from_str(&body).ctx("deployments list")?;
    for name in list["deployments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["name"].as_str())
    {
        let path = format!("/v1/deployments/{}", url_encode(name));
        let (status, body) = api.send(api.request(Method::DELETE, &path), "delete deployment")?;
        ensure!(
            status.is_success() || status == 404,
            "deleting the fuzzed deployment {name:?}: {status} {body}"
        );
    }
    stop_leftovers(api).map(drop)
}
