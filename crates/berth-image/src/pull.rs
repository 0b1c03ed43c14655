//! Pulling images with the OCI distribution client: manifest, config, then each layer
//! downloaded, digest-verified and unpacked once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use oci_client::client::{linux_amd64_resolver, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};

use crate::chunk_reader::ChunkReader;
use crate::error::io_err;
use crate::reference::apply_mirrors;
use crate::store::digest_hex;
use crate::{
    unpack_layer, ContentStore, ImageConfig, ImageError, PendingLayer, RegistryMirror,
    ResolvedImage, UnpackError,
};

/// Credentials per registry host, from `BERTH_REGISTRY_AUTH="host=user:password,..."`.
#[derive(Debug, Clone, Default)]
pub struct RegistryCredentials(HashMap<String, (String, String)>);

impl RegistryCredentials {
    pub const ENV: &'static str = "BERTH_REGISTRY_AUTH";

    pub fn from_env() -> Self {
        std::env::var(Self::ENV)
            .map(|v| Self::parse(&v))
            .unwrap_or_default()
    }

    pub fn parse(text: &str) -> Self {
        let map = text
            .split(',')
            .filter_map(|item| {
                let (host, cred) = item.trim().split_once('=')?;
                let (user, password) = cred.split_once(':')?;
                Some((host.to_string(), (user.to_string(), password.to_string())))
            })
            .collect();
        RegistryCredentials(map)
    }

    /// The credentials as a containers `auth.json` (what buildah reads for `FROM`).
    pub fn auth_json(&self) -> serde_json::Value {
        use base64::Engine;
        let auths: serde_json::Map<String, serde_json::Value> = self
            .0
            .iter()
            .map(|(host, (user, password))| {
                let auth =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                (host.clone(), serde_json::json!({ "auth": auth }))
            })
            .collect();
        serde_json::json!({ "auths": auths })
    }

    fn for_registry(&self, registry: &str) -> RegistryAuth {
        match self.0.get(registry) {
            Some((user, password)) => RegistryAuth::Basic(user.clone(), password.clone()),
            None => RegistryAuth::Anonymous,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// Registries spoken to over plain HTTP (`--insecure-registry`).
    pub insecure_registries: Vec<String>,
    pub mirrors: Vec<RegistryMirror>,
    pub credentials: RegistryCredentials,
}

/// Where a pull is, for progress lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PullProgress {
    pub layers_done: usize,
    pub layers_total: usize,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

impl std::fmt::Display for PullProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mb = |b: u64| b as f64 / 1_000_000.0;
        write!(
            f,
            "{}/{} layers, {:.1}/{:.1} MB",
            self.layers_done,
            self.layers_total,
            mb(self.bytes_done),
            mb(self.bytes_total)
        )
    }
}

pub struct Puller {
    client: Client,
    store: ContentStore,
    options: PullOptions,
    /// One lock per layer digest, so concurrent pulls of shared layers unpack them once.
    layer_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Puller {
    pub fn new(store: ContentStore, options: PullOptions) -> Self {
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(options.insecure_registries.clone()),
            platform_resolver: Some(Box::new(linux_amd64_resolver)),
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(120)),
            user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        Puller {
            client: Client::new(config),
            store,
            options,
            layer_locks: Mutex::new(HashMap::new()),
        }
    }

    pub fn store(&self) -> &ContentStore {
        &self.store
    }

    pub fn options(&self) -> &PullOptions {
        &self.options
    }

    /// The image for `reference`: from the store when it was pulled before (Docker's
    /// "pull if missing"), else from its registry.
    pub async fn resolve(
        &self,
        reference: &Reference,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<ResolvedImage, ImageError> {
        let name = reference.whole();
        if let Some(image) = self.store.lookup(&name) {
            return Ok(image);
        }
        let _writing = self.store.writing().await;
        // A mirror that fails or lacks the image falls back to the registry itself, as
        // Docker's registry-mirrors do.
        let mirrored = apply_mirrors(reference, &self.options.mirrors);
        let (source, (manifest, manifest_digest, config_json)) = match self
            .manifest(&mirrored)
            .await
        {
            Ok(found) => (mirrored, found),
            Err(e) if mirrored.registry() != reference.registry() => {
                tracing::info!(image = %name, mirror = %mirrored.registry(), "mirror failed ({e}); trying the registry");
                (reference.clone(), self.manifest(reference).await?)
            }
            Err(e) => return Err(e),
        };
        let config = ImageConfig::from_json(&config_json).map_err(|e| ImageError::BadConfig {
            reference: name.clone(),
            detail: e.to_string(),
        })?;
        for layer in &manifest.layers {
            if !is_layer_media_type(&layer.media_type) {
                return Err(ImageError::UnsupportedLayer {
                    reference: name.clone(),
                    media_type: layer.media_type.clone(),
                });
            }
        }

        let diff_ids = diff_ids(&config_json);
        let state = Mutex::new(PullProgress {
            layers_total: manifest.layers.len(),
            bytes_total: manifest.layers.iter().map(|l| l.size.max(0) as u64).sum(),
            ..PullProgress::default()
        });
        progress(*lock_progress(&state));
        // Layers come in at once, a few at a time: one downloads while another unpacks. The
        // futures are made first, each owning its layer: a stream mapping borrowed layers to
        // futures is not provably Send for every lifetime, which the server's task needs.
        let (name_ref, source_ref, state_ref, diff_ids_ref) = (&name, &source, &state, &diff_ids);
        let fetches: Vec<_> = manifest
            .layers
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, layer)| {
                let (name, source, state, diff_ids) =
                    (name_ref, source_ref, state_ref, diff_ids_ref);
                async move {
                    let layer = &layer;
                    self.fetch_layer(name, source, layer, state, progress)
                        .await?;
                    // What a push of an image built on this one needs to list the layer.
                    if let Some(diff_id) = diff_ids.get(i) {
                        self.store.remember_layer_blob(
                            &layer.digest,
                            &crate::LayerBlob {
                                media_type: layer.media_type.clone(),
                                digest: layer.digest.clone(),
                                size: layer.size.max(0) as u64,
                                diff_id: diff_id.clone(),
                            },
                        )?;
                    }
                    let now = {
                        let mut s = lock_progress(state);
                        s.layers_done += 1;
                        *s
                    };
                    progress(now);
                    Ok::<(), ImageError>(())
                }
            })
            .collect();
        futures_util::stream::iter(fetches)
            .buffer_unordered(PARALLEL_LAYERS)
            .try_collect::<Vec<()>>()
            .await?;

        let image = ResolvedImage {
            reference: name,
            manifest_digest,
            config,
            layer_digests: manifest.layers.iter().map(|l| l.digest.clone()).collect(),
        };
        self.store.record(&image)?;
        Ok(image)
    }

    /// Pushes a built image (its OCI manifest, config and layer blobs in the store) to
    /// `target`, skipping blobs the registry has.
    pub async fn push(
        &self,
        image: &ResolvedImage,
        target: &Reference,
        log: &(dyn Fn(String) + Send + Sync),
    ) -> Result<String, ImageError> {
        let name = target.whole();
        let registry = target.registry().to_string();
        let err = |detail: String| ImageError::Registry {
            reference: name.clone(),
            registry: registry.clone(),
            detail,
        };
        let manifest_path = self.store.blob_path(&image.manifest_digest);
        let manifest_bytes = tokio::fs::read(&manifest_path)
            .await
            .map_err(io_err(&manifest_path))?;
        let manifest: oci_client::manifest::OciImageManifest =
            serde_json::from_slice(&manifest_bytes).map_err(|e| {
                err(format!(
                    "the stored manifest of {} is unreadable: {e}",
                    image.reference
                ))
            })?;
        let auth = self
            .options
            .credentials
            .for_registry(target.resolve_registry());
        self.client
            .store_auth_if_needed(target.resolve_registry(), &auth)
            .await;
        let blobs = manifest
            .layers
            .iter()
            .chain(std::iter::once(&manifest.config));
        for blob in blobs {
            let exists = self
                .client
                .blob_exists(target, &blob.digest)
                .await
                .map_err(|e| classify(&name, target, e))?;
            if exists {
                log(format!("   {} already in {registry}", blob.digest));
                continue;
            }
            log(format!(
                "   pushing {} ({:.1} MB)",
                blob.digest,
                blob.size as f64 / 1_000_000.0
            ));
            let path = self.store.blob_path(&blob.digest);
            let data = tokio::fs::read(&path).await.map_err(io_err(&path))?;
            self.client
                .push_blob(target, data, &blob.digest)
                .await
                .map_err(|e| classify(&name, target, e))?;
        }
        self.client
            .push_manifest(target, &oci_client::manifest::OciManifest::Image(manifest))
            .await
            .map_err(|e| classify(&name, target, e))
    }

    async fn manifest(
        &self,
        source: &Reference,
    ) -> Result<(oci_client::manifest::OciImageManifest, String, String), ImageError> {
        let auth = self.options.credentials.for_registry(source.registry());
        self.client
            .pull_manifest_and_config(source, &auth)
            .await
            .map_err(|e| classify(&source.whole(), source, e))
    }

    async fn fetch_layer(
        &self,
        name: &str,
        source: &Reference,
        layer: &OciDescriptor,
        state: &Mutex<PullProgress>,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<(), ImageError> {
        let lock = {
            let mut locks = self.layer_locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(layer.digest.clone()).or_default().clone()
        };
        let _guard = lock.lock().await;
        let dest = self.store.layer_dir(&layer.digest);
        if dest.is_dir() {
            lock_progress(state).bytes_done += layer.size.max(0) as u64;
            return Ok(());
        }
        let blob = self.store.blob_path(&layer.digest);
        if !blob.is_file() {
            return self
                .download_and_unpack(name, source, layer, &blob, &dest, state, progress)
                .await;
        }
        lock_progress(state).bytes_done += layer.size.max(0) as u64;
        let digest = layer.digest.clone();
        let unpacked = tokio::task::spawn_blocking(move || unpack_layer(&blob, &dest))
            .await
            .map_err(|e| task_failed(name, source, e))?;
        unpacked.map_err(|source| ImageError::Unpack {
            reference: name.to_string(),
            digest,
            source,
        })?;
        Ok(())
    }

    /// Streams a blob to a temporary file and, at the same time, unpacks it beside `dest`;
    /// the blob and the layer move into place only when the blob's sha256 is right. The
    /// unpack reads bytes not yet verified, which is safe: it treats every archive as
    /// hostile, and what it wrote is removed if the digest turns out wrong.
    #[allow(clippy::too_many_arguments)]
    async fn download_and_unpack(
        &self,
        name: &str,
        source: &Reference,
        layer: &OciDescriptor,
        blob: &std::path::Path,
        dest: &std::path::Path,
        state: &Mutex<PullProgress>,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> Result<(), ImageError> {
        let tmp = self.store.tmp_path(&format!(
            "{}-{}",
            digest_hex(&layer.digest),
            std::process::id()
        ));
        let mut stream = self
            .client
            .pull_blob_stream(source, layer)
            .await
            .map_err(|e| classify(name, source, e))?;
        let file = tokio::fs::File::create(&tmp)
            .await
            .map_err(io_err(&tmp))?
            .into_std()
            .await;
        // Removes the partial blob however this ends, a pull cancelled with its request too.
        let tmp_guard = RemoveOnDrop(Some(tmp.clone()));
        let (chunks, received) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
        let layer_dest = dest.to_path_buf();
        let unpacker = tokio::task::spawn_blocking(move || {
            let mut reader = ChunkReader::new(received, file);
            // Returning early drops the reader, which ends the download below.
            let (pending, _) = PendingLayer::unpack(&mut reader, &layer_dest)?;
            reader.finish().map_err(UnpackError::Archive)?;
            Ok::<_, UnpackError>(pending)
        });

        let mut hasher = Sha256::new();
        let mut last_report = 0u64;
        let mut received = 0u64;
        let mut broken = None;
        let mut unpack_stopped = false;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                // Every byte came: the client's own digest check failed, which the digest
                // check below reports with the digest that arrived.
                Err(_) if layer.size > 0 && received == layer.size as u64 => break,
                Err(e) => {
                    broken = Some(ImageError::Registry {
                        reference: name.to_string(),
                        registry: source.registry().to_string(),
                        detail: format!(
                            "the download of layer {} broke after {received} of {} bytes                              ({e}); pulling again fetches only the layers not yet verified",
                            layer.digest, layer.size
                        ),
                    });
                    break;
                }
            };
            received += chunk.len() as u64;
            if layer.size > 0 && received > layer.size as u64 {
                broken = Some(ImageError::Registry {
                    reference: name.to_string(),
                    registry: source.registry().to_string(),
                    detail: format!(
                        "layer {} is longer than the {} bytes its manifest says",
                        layer.digest, layer.size
                    ),
                });
                break;
            }
            hasher.update(&chunk);
            let now = {
                let mut s = lock_progress(state);
                s.bytes_done += chunk.len() as u64;
                *s
            };
            if now.bytes_done - last_report > 4 << 20 {
                last_report = now.bytes_done;
                progress(now);
            }
            // An unpack that stopped (its error says why) gets no more chunks, but the
            // rest is still hashed: a wrong digest explains a broken archive better.
            if !unpack_stopped && chunks.send(chunk).await.is_err() {
                unpack_stopped = true;
            }
        }
        drop(chunks);
        let unpacked = unpacker.await.map_err(|e| task_failed(name, source, e))?;
        let unpack_failed = |source| ImageError::Unpack {
            reference: name.to_string(),
            digest: layer.digest.clone(),
            source,
        };
        // A broken download explains a truncated archive, and a wrong digest a corrupt one:
        // each is reported before what the unpack made of it.
        if let Some(error) = broken {
            return Err(error);
        }
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != layer.digest {
            return Err(ImageError::Registry {
                reference: name.to_string(),
                registry: source.registry().to_string(),
                detail: format!("layer {} arrived with digest {actual}", layer.digest),
            });
        }
        let pending = unpacked.map_err(unpack_failed)?;
        tokio::fs::rename(&tmp, blob).await.map_err(io_err(blob))?;
        tmp_guard.disarm();
        pending.commit().map_err(unpack_failed)
    }
}

/// A file removed when this drops, unless disarmed.
struct RemoveOnDrop(Option<std::path::PathBuf>);

impl RemoveOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Chunks of a blob between its download and its unpack: enough to ride out a slow write,
/// few enough to keep the memory of a pull small.
const CHUNKS_IN_FLIGHT: usize = 64;

fn task_failed(name: &str, source: &Reference, e: tokio::task::JoinError) -> ImageError {
    ImageError::Registry {
        reference: name.to_string(),
        registry: source.registry().to_string(),
        detail: format!("unpack task failed: {e}"),
    }
}

/// Layers of one image fetched at once (Docker and containerd default to 3).
const PARALLEL_LAYERS: usize = 3;

fn lock_progress(state: &Mutex<PullProgress>) -> std::sync::MutexGuard<'_, PullProgress> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// The `rootfs.diff_ids` of an image config.
pub(crate) fn diff_ids(config_json: &str) -> Vec<String> {
    serde_json::from_str::<serde_json::Value>(config_json)
        .ok()
        .and_then(|v| {
            v["rootfs"]["diff_ids"].as_array().map(|a| {
                a.iter()
                    .filter_map(|d| d.as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default()
}

pub(crate) fn is_layer_media_type(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.oci.image.layer.v1.tar")
        || media_type.starts_with("application/vnd.docker.image.rootfs.diff.tar")
}

/// Turns a distribution error into one that says what the user can do about it.
fn classify(name: &str, source: &Reference, error: OciDistributionError) -> ImageError {
    let reference = name.to_string();
    let registry = source.registry().to_string();
    let detail = error.to_string();
    match &error {
        OciDistributionError::ImageManifestNotFoundError(_) => ImageError::NotFound {
            reference,
            registry,
            detail,
        },
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<_> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                )
            }) {
                ImageError::NotFound {
                    reference,
                    registry,
                    detail,
                }
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                ImageError::Unauthorized {
                    reference,
                    registry,
                    detail: format!(
                        "{detail} (the image may not exist, or needs credentials in {})",
                        RegistryCredentials::ENV
                    ),
                }
            } else {
                ImageError::Registry {
                    reference,
                    registry,
                    detail,
                }
            }
        }
        OciDistributionError::ServerError { code: 404, .. } => ImageError::NotFound {
            reference,
            registry,
            detail,
        },
        OciDistributionError::AuthenticationFailure(_)
        | OciDistributionError::UnauthorizedError { .. } => ImageError::Unauthorized {
            reference,
            registry,
            detail,
        },
        OciDistributionError::RequestError(e) if e.is_connect() || e.is_timeout() => {
            ImageError::Unreachable {
                reference,
                registry,
                detail: error_chain(e),
            }
        }
        OciDistributionError::RequestError(e) => ImageError::Registry {
            reference,
            registry,
            detail: error_chain(e),
        },
        _ => ImageError::Registry {
            reference,
            registry,
            detail,
        },
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        text.push_str(": ");
        text.push_str(&s.to_string());
        cur = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_per_registry() {
        let c = RegistryCredentials::parse("r.example:5000=bob:s3:cret, ghcr.io=amy:pw");
        assert!(
            matches!(c.for_registry("r.example:5000"), RegistryAuth::Basic(u, p) if u == "bob" && p == "s3:cret")
        );
        assert!(matches!(
            c.for_registry("docker.io"),
            RegistryAuth::Anonymous
        ));
    }

    #[test]
    fn layer_media_types() {
        assert!(is_layer_media_type(
            "application/vnd.oci.image.layer.v1.tar+zstd"
        ));
        assert!(is_layer_media_type(
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        ));
        assert!(!is_layer_media_type("application/vnd.in-toto+json"));
    }
}
