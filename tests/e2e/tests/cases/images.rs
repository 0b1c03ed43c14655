//! Image formats and sources beyond a plain single-platform gzip image: a Docker Hub name
//! through a mirror, a multi-platform index, zstd layers.

use serde_json::json;

use crate::common::harness::Env;
use crate::common::images::{
    busybox_index_text, MULTIARCH_AMD64_TEXT, MULTIARCH_ARM64_TEXT, ZSTD_TEXT,
};
use crate::common::Res;
use crate::ensure;

/// `busybox` is `docker.io/library/busybox:latest`. Docker Hub is unreachable here, so the pod
/// can only run if the pull went to the `--registry-mirror docker.io=...` registry.
pub fn docker_hub_via_mirror(env: &Env) -> Res<()> {
    let api = &env.api;
    let image = env.images.hub_busybox.as_str();
    let pod = api.launch(json!({"image": image, "ports": [8080]}))?;
    api.wait_running(&pod.id).map_err(|e| {
        format!(
            "the Docker Hub name {image:?} did not run through the docker.io mirror {}: {e}",
            env.registry.host()
        )
    })?;
    let body = pod.wait_http_ok(8080, "/")?;
    ensure!(
        body.contains(busybox_index_text()),
        "{} (image {image:?}) answered {body:?}, expected the busybox index page",
        pod.url(8080)?
    );
    Ok(())
}

/// An OCI index listing arm64 first, then amd64: the server must run the amd64 image.
pub fn multi_arch_index_runs_amd64(env: &Env) -> Res<()> {
    let api = &env.api;
    let image = env.images.multiarch.as_str();
    let pod = api.launch(json!({"image": image, "ports": [8080]}))?;
    api.wait_running(&pod.id)?;
    let body = pod.wait_http_ok(8080, "/")?;
    ensure!(
        !body.starts_with(&format!("{MULTIARCH_ARM64_TEXT}\n")),
        "the index {image} lists arm64 and amd64 images and the server ran the arm64 one \
         (it answered {body:?})"
    );
    ensure!(
        body.starts_with(&format!("{MULTIARCH_AMD64_TEXT}\n")),
        "the index {image} should run its amd64 image, answering {MULTIARCH_AMD64_TEXT:?}; \
         it answered {body:?}"
    );
    Ok(())
}

/// An image whose only layer is `application/vnd.oci.image.layer.v1.tar+zstd`.
pub fn zstd_layer(env: &Env) -> Res<()> {
    let api = &env.api;
    let image = env.images.zstd.as_str();
    let pod = api.launch(json!({"image": image, "ports": [8080]}))?;
    api.wait_running(&pod.id)
        .map_err(|e| format!("an image with a tar+zstd layer did not run: {e}"))?;
    let body = pod.wait_http_ok(8080, "/")?;
    ensure!(
        body.starts_with(&format!("{ZSTD_TEXT}\n")),
        "{image} (a tar+zstd layer) answered {body:?}, expected {ZSTD_TEXT:?}"
    );
    Ok(())
}
