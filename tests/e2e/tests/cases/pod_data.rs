//! What pods get besides an image: the synced working directory at /mnt/code, volumes that
//! outlive them, and secrets that reach their environment and nothing else.

use reqwest::{Method, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::common::harness::Env;
use crate::common::{random_hex, timeouts, Res};
use crate::ensure;

/// A gzip'd tar of `(path, content)` files, names written as given (hostile ones too).
pub(super) fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        let name = path.as_bytes();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append(&h, *data).expect("append to an in-memory tar");
    }
    tar.into_inner()
        .and_then(|gz| gz.finish())
        .expect("finish an in-memory archive")
}

pub(super) fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub(super) fn put_code(env: &Env, digest: &str, body: Vec<u8>) -> Res<(StatusCode, String)> {
    env.api.send(
        env.api
            .request(Method::PUT, &format!("/v1/code/{digest}"))
            .header(reqwest::header::CONTENT_TYPE, "application/gzip")
            .body(body),
        "PUT /v1/code",
    )
}

/// Runs `script` in a busybox pod with `extra` fields and returns its output once it ended.
fn run_script(env: &Env, script: &str, extra: serde_json::Value) -> Res<String> {
    let mut spec = json!({
        "image": format!("{}/busybox:latest", env.registry.addr),
        "entrypoint": ["sh", "-c", script],
        "keep_warm_seconds": -1,
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    let pod = env.api.launch(spec)?;
    let ended = env.api.wait_terminal(&pod.id, timeouts::START)?;
    let logs = env.api.logs(&pod.id)?;
    ensure!(
        ended.exit_code == Some(0),
        "the script ended {:?} ({:?}): {logs}",
        ended.exit_code,
        ended.reason
    );
    Ok(logs)
}

/// An upload is checked (digest, traversal), stored once, and mounted read-only.
pub fn code_is_uploaded_checked_and_mounted(env: &Env) -> Res<()> {
    let tag = random_hex(4);
    let hostile = archive(&[("../escape.txt", b"x")]);
    let (status, text) = put_code(env, &digest(&hostile), hostile)?;
    ensure!(
        status == StatusCode::BAD_REQUEST && text.contains("climbs out"),
        "a traversal archive answered {status}: {text}"
    );
    let good = archive(&[("hello.txt", format!("code-{tag}").as_bytes())]);
    let wrong = format!("sha256:{}", "0".repeat(64));
    let (status, text) = put_code(env, &wrong, good.clone())?;
    ensure!(
        status == StatusCode::BAD_REQUEST && text.contains("sha256"),
        "a digest mismatch answered {status}: {text}"
    );
    let d = digest(&good);
    let (status, text) = put_code(env, &d, good)?;
    ensure!(
        status == StatusCode::CREATED,
        "upload answered {status}: {text}"
    );
    let (status, _) = env.api.send(
        env.api.request(Method::HEAD, &format!("/v1/code/{d}")),
        "HEAD /v1/code",
    )?;
    ensure!(
        status == StatusCode::OK,
        "HEAD of an uploaded archive: {status}"
    );
    let logs = run_script(
        env,
        "cat /mnt/code/hello.txt; echo; touch /mnt/code/new 2>/dev/null && echo WRITABLE || echo read-only",
        json!({"code": d}),
    )?;
    ensure!(
        logs.contains(&format!("code-{tag}")) && logs.contains("read-only"),
        "the pod saw: {logs}"
    );
    Ok(())
}

/// A file one pod writes to a volume, the next pod that mounts it reads; then
/// `berth volume list|delete` see and remove it.
pub fn volumes_outlive_pods(env: &Env) -> Res<()> {
    let tag = random_hex(4);
    let volume = format!("vol-{tag}");
    let mounts = json!({"volumes": [{"name": volume, "mount_path": "/data"}]});
    run_script(env, &format!("echo kept-{tag} > /data/f"), mounts.clone())?;
    let logs = run_script(env, "cat /data/f", mounts)?;
    ensure!(
        logs.contains(&format!("kept-{tag}")),
        "the second pod read: {logs}"
    );
    let list = env.api.cli(&["volume", "list"])?;
    ensure!(
        list.stdout.contains(&volume),
        "volume list:\n{}",
        list.show()
    );
    let deleted = env.api.cli(&["volume", "delete", &volume])?;
    ensure!(
        deleted.status.success(),
        "volume delete:\n{}",
        deleted.show()
    );
    let list = env.api.cli(&["volume", "list"])?;
    ensure!(
        !list.stdout.contains(&volume),
        "deleted volume still listed:\n{}",
        list.show()
    );
    Ok(())
}

/// A secret reaches the pod's environment and appears in no answer of the API, nor in the
/// server's log.
pub fn secrets_reach_env_and_nothing_else(env: &Env) -> Res<()> {
    let tag = random_hex(4).to_uppercase();
    let name = format!("TOKEN_{tag}");
    let value = format!("s3cret-{}", random_hex(8));
    let out = env.api.cli(&["secret", "create", &name, &value])?;
    ensure!(out.status.success(), "secret create:\n{}", out.show());
    let logs = run_script(
        env,
        &format!("echo \"got=${name}\""),
        json!({"secrets": [name]}),
    )?;
    ensure!(
        logs.contains(&format!("got={value}")),
        "the pod saw: {logs}"
    );
    for path in ["/v1/containers?all=true", "/v1/secrets", "/v1/deployments"] {
        let (status, text) = env.api.send(env.api.request(Method::GET, path), path)?;
        ensure!(status == StatusCode::OK, "{path}: {status}");
        ensure!(!text.contains(&value), "{path} shows the secret's value");
        if path == "/v1/secrets" {
            ensure!(
                text.contains(&name),
                "/v1/secrets does not list {name}: {text}"
            );
        }
    }
    let list = env.api.cli(&["secret", "list"])?;
    ensure!(
        list.stdout.contains(&name) && !list.stdout.contains(&value),
        "secret list:\n{}",
        list.show()
    );
    let server_log = std::fs::read_to_string(&env.server.log).unwrap_or_default();
    ensure!(
        !server_log.contains(&value),
        "the server log shows the secret's value"
    );
    let deleted = env.api.cli(&["secret", "delete", &name])?;
    ensure!(
        deleted.status.success(),
        "secret delete:\n{}",
        deleted.show()
    );
    // Asking for a deleted secret is refused at create, naming it.
    let (status, text) = env.api.create_raw(
        &json!({"image": format!("{}/busybox:latest", env.registry.addr), "secrets": [name]})
            .to_string(),
        Some(env.api.token.as_str()),
    )?;
    ensure!(
        status == StatusCode::BAD_REQUEST && text.contains(&name),
        "a pod asking for a deleted secret: {status} {text}"
    );
    Ok(())
}
