//! berth's default base image: Debian bookworm with python3, pip and venv, made locally by
//! `mmdebstrap` once and kept in the store, so pods without a `base_image` need no registry.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::runner::{BuildError, BuildLog};
use crate::{ContentStore, ImageConfig, ResolvedImage};

pub const DEFAULT_BASE_REFERENCE: &str = "berth-default-base:bookworm-v1";
const SUITE: &str = "bookworm";
const PACKAGES: &str = "python3,python3-pip,python3-venv,python-is-python3,ca-certificates";

/// Concurrent first builds of the base make it once.
static BASE_LOCK: Mutex<()> = Mutex::new(());

/// The default base, built on first use (with progress lines) and reused after.
pub fn default_base_image(
    store: &ContentStore,
    log: BuildLog<'_>,
) -> Result<ResolvedImage, BuildError> {
    if let Some(image) = store.lookup(DEFAULT_BASE_REFERENCE) {
        return Ok(image);
    }
    let _guard = BASE_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let _writing = store.writing_blocking();
    if let Some(image) = store.lookup(DEFAULT_BASE_REFERENCE) {
        return Ok(image);
    }
    log(format!(
        "=> Building the default base image (Debian {SUITE} with python3; once, takes about a minute)"
    ));
    let digest = format!(
        "sha256:{}",
        hex::encode(Sha256::digest(
            format!("{DEFAULT_BASE_REFERENCE}\0{PACKAGES}").as_bytes()
        ))
    );
    let dest = store.layer_dir(&digest);
    if !dest.is_dir() {
        let tmp = store.tmp_path("default-base");
        let _ = std::fs::remove_dir_all(&tmp);
        if let Err(e) = mmdebstrap(&tmp, log) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &dest)
            .map_err(|e| BuildError::Store(format!("{}: {e}", dest.display())))?;
    }
    store.mark_build_layer(&digest);
    let config = ImageConfig {
        env: vec![
            format!("PATH={}", berth_api::DEFAULT_PATH),
            "LANG=C.UTF-8".into(),
        ],
        cmd: vec!["python3".into()],
        ..ImageConfig::default()
    };
    // An OCI image in the store like any other (its layer as a tarball, config, manifest).
    let manifest_digest = store
        .write_oci_image(&config, std::slice::from_ref(&digest))
        .map_err(|e| BuildError::Store(e.to_string()))?;
    let image = ResolvedImage {
        reference: DEFAULT_BASE_REFERENCE.to_string(),
        manifest_digest,
        config,
        layer_digests: vec![digest],
    };
    store
        .record(&image)
        .map_err(|e| BuildError::Store(e.to_string()))?;
    log("=> Default base image ready".into());
    Ok(image)
}

fn mmdebstrap(target: &std::path::Path, log: BuildLog<'_>) -> Result<(), BuildError> {
    let fail = |message: String| BuildError::StepError {
        index: 0,
        total: 0,
        step: "default base image".into(),
        source: message.into(),
    };
    let mut child = Command::new("mmdebstrap")
        .args(["--variant=minbase", "--mode=root", "--format=directory"])
        .arg(format!("--include={PACKAGES}"))
        .args([SUITE])
        .arg(target)
        .env_clear()
        .env("PATH", berth_api::DEFAULT_PATH)
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            fail(format!(
                "cannot run mmdebstrap (install the mmdebstrap package): {e}"
            ))
        })?;
    let mut tail = std::collections::VecDeque::new();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tail.len() == 20 {
                tail.pop_front();
            }
            tail.push_back(line.clone());
            log(format!("   {line}"));
        }
    }
    let status = child.wait().map_err(|e| fail(e.to_string()))?;
    if status.success() {
        Ok(())
    } else {
        Err(fail(format!(
            "mmdebstrap exited with {status}:\n{}",
            tail.into_iter().collect::<Vec<_>>().join("\n")
        )))
    }
}
