//! Images from a Dockerfile: built on the server by buildah, run as pods, cached by
//! Dockerfile, context and build args; failing steps and hostile contexts refused.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::pod_data::{digest, put_code};
use crate::common::client::created_id;
use crate::common::harness::Env;
use crate::common::{indent, random_hex, Res};
use crate::ensure;

const MULTI_STAGE: &str = r#"# The base comes in as an ARG, so FROM itself is templated.
ARG BASE
FROM ${BASE} AS first
ARG GREETING=hi
RUN busybox mkdir -p /out && echo "$GREETING from the first stage" > /out/made.txt
RUN [ -s "$SSL_CERT_FILE" ] && echo "ca at $SSL_CERT_FILE" > /out/ca.txt
FROM ${BASE}
COPY --from=first /out/made.txt /out/ca.txt /srv/
COPY site/ /srv/
USER 1000
EXPOSE 8080
CMD ["httpd", "-f", "-p", "8080", "-h", "/srv"]
"#;

fn write(dir: &Path, rel: &str, text: &str) -> Res<()> {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("mkdir {}: {e}", parent.display()))?;
    }
    std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

/// A multi-stage Dockerfile whose base is in the test registry, run with `berth run
/// --dockerfile`: the first stage's file and a context file are served through the pod's
/// URL on the EXPOSEd port, as the Dockerfile's USER; RUN steps see the host CA, the image
/// keeps no trace of it; the same build again is a cache hit that runs nothing.
pub fn multi_stage_build_runs_as_a_pod(env: &Env) -> Res<()> {
    let api = &env.api;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let greeting = format!("hello-{}", random_hex(4));
    let page = format!("from the context {}", random_hex(4));
    write(dir.path(), "Dockerfile", MULTI_STAGE)?;
    write(dir.path(), "site/hello.txt", &page)?;
    write(dir.path(), "site/secret.txt", "never sent")?;
    write(dir.path(), ".dockerignore", "site/secret.txt\n")?;
    let dockerfile = dir.path().join("Dockerfile").display().to_string();
    let base = format!("BASE={}", env.images.busybox);
    let greeting_arg = format!("GREETING={greeting}");
    let build_flags = [
        "--dockerfile",
        dockerfile.as_str(),
        "--build-arg",
        base.as_str(),
        "--build-arg",
        greeting_arg.as_str(),
    ];

    let mut args = vec!["run"];
    args.extend(build_flags);
    args.extend(["--keep-warm-seconds", "-1"]);
    let out = api.cli(&args)?;
    let id = created_id(&out.stdout);
    let pod = id.as_deref().map(|id| api.adopt(id)).transpose()?;
    ensure!(
        out.status.success(),
        "berth run --dockerfile failed:\n{}",
        out.show()
    );
    for expected in [
        "=> Uploaded the build context",
        "=> Building image from the Dockerfile",
        "COPY --from=first /out/made.txt /out/ca.txt /srv/",
        "=> Image built: berth-build/",
    ] {
        ensure!(
            out.stdout.contains(expected),
            "the build log lacks {expected:?}:\n{}",
            out.show()
        );
    }
    let pod = pod.ok_or_else(|| format!("no container id printed:\n{}", out.show()))?;
    let container = api.wait_running(&pod.id)?;
    ensure!(
        container.ports == [8080],
        "the pod serves {:?}, not the Dockerfile's EXPOSE 8080",
        container.ports
    );
    let made = pod.wait_http_ok(8080, "/made.txt")?;
    ensure!(
        made.trim() == format!("{greeting} from the first stage"),
        "the first stage's file reads {made:?}"
    );
    // RUN steps find the host's CA bundle through the variables berth gives them...
    let ca = pod.wait_http_ok(8080, "/ca.txt")?;
    ensure!(
        ca.trim() == "ca at /dev/berth-build-ca.crt",
        "a RUN step saw the build CA as {ca:?}"
    );
    // ...which the image does not keep.
    let env_out = api.cli(&[
        "container",
        "exec",
        &pod.id,
        "--",
        "sh",
        "-c",
        "echo \"[$SSL_CERT_FILE]\"",
    ])?;
    ensure!(
        env_out.stdout.trim() == "[]",
        "the build CA variable reached the image: {}",
        env_out.show()
    );
    let served = pod.wait_http_ok(8080, "/hello.txt")?;
    ensure!(served.trim() == page, "the context's file reads {served:?}");
    let (status, _) = api.ingress_get(&format!("{}/secret.txt", pod.url(8080)?))?;
    ensure!(
        status == StatusCode::NOT_FOUND,
        "a file .dockerignore leaves out answered {status}"
    );
    let uid = api.cli(&["container", "exec", &pod.id, "--", "busybox", "id", "-u"])?;
    ensure!(
        uid.stdout.trim() == "1000",
        "the pod runs as uid {:?}, not the Dockerfile's USER 1000:\n{}",
        uid.stdout.trim(),
        uid.show()
    );

    let mut again = vec!["image", "build"];
    again.extend(build_flags);
    let cached = api.cli(&again)?;
    ensure!(
        cached.status.success()
            && cached.stdout.contains("=> Using cached image")
            && !cached.stdout.contains("STEP")
            && !cached.stdout.contains("Uploaded"),
        "the same Dockerfile, context and args again were not a plain cache hit:\n{}",
        cached.show()
    );
    Ok(())
}

/// A `RUN` that fails ends the build with its exit code and its output, through the API.
pub fn a_failing_run_gives_its_code_and_output(env: &Env) -> Res<()> {
    let marker = format!("the step says {}", random_hex(4));
    let spec = json!({
        "dockerfile": format!("FROM {}\nRUN echo {marker}; exit 7\n", env.images.busybox),
    });
    let (log, result) = env.api.build(&spec)?;
    let error = match result {
        Ok(image) => return Err(format!("a failing RUN built {image}")),
        Err(error) => error,
    };
    ensure!(
        error.contains("exit code 7") && error.contains(&marker),
        "the error does not give the step's code and output: {error}\nlog:\n{}",
        indent(&log.join("\n"))
    );
    Ok(())
}

/// A context with a symlink out is refused by the CLI, and archives that climb out or hold
/// such a link by the server; a context never uploaded is a 400 naming the field.
pub fn hostile_contexts_are_refused(env: &Env) -> Res<()> {
    let api = &env.api;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    write(dir.path(), "Dockerfile", "FROM scratch\nCOPY . /\n")?;
    std::os::unix::fs::symlink("/etc/shadow", dir.path().join("shadow"))
        .map_err(|e| format!("symlink: {e}"))?;
    let dockerfile = dir.path().join("Dockerfile").display().to_string();
    let out = api.cli(&["image", "build", "--dockerfile", &dockerfile])?;
    ensure!(
        !out.status.success()
            && out
                .stderr
                .contains("symlink out of it: shadow -> /etc/shadow"),
        "a context with a symlink out was not refused:\n{}",
        out.show()
    );

    for (what, archive) in [
        (
            "a ../ path",
            super::pod_data::archive(&[("../../escape", b"x")]),
        ),
        ("a symlink out", link_archive("out", "../../../etc")),
    ] {
        let (status, text) = put_code(env, &digest(&archive), archive)?;
        ensure!(
            status == StatusCode::BAD_REQUEST,
            "a context archive with {what} answered {status}: {text}"
        );
    }

    let never = format!("sha256:{}", random_hex(32));
    let (status, text) = api.send(
        api.request(reqwest::Method::POST, "/v1/images/build")
            .json(&json!({"dockerfile": "FROM scratch\n", "context": never})),
        "POST /v1/images/build",
    )?;
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_default();
    ensure!(
        status == StatusCode::BAD_REQUEST && message.starts_with("image.context:"),
        "a context never uploaded answered {status}: {text}"
    );
    Ok(())
}

/// A gzip'd tar holding one symlink.
fn link_archive(name: &str, target: &str) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    tar.append_link(&mut h, name, target)
        .expect("append to an in-memory tar");
    tar.into_inner()
        .and_then(|gz| gz.finish())
        .expect("finish an in-memory archive")
}
