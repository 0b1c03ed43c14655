//! Importing an image from an OCI image layout directory (what a builder such as buildah
//! writes with `push oci:<dir>`): every blob is checked against its digest, layers are
//! unpacked with the same hostile-input rules as pulled ones, and a layer a pulled image
//! already has (same uncompressed digest) is shared rather than unpacked again.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::io_err;
use crate::store::digest_hex;
use crate::{unpack_layer, ContentStore, ImageConfig, ImageError, LayerBlob, ResolvedImage};

/// index.json, manifests and configs are small; anything larger is not a layout we made.
const MAX_DOCUMENT_BYTES: u64 = 4 << 20;

impl ContentStore {
    /// Records the one image in the OCI layout at `dir` as `reference`. Blobs are moved
    /// into the store (the layout is the caller's scratch directory and is left emptied).
    pub fn import_oci_layout(
        &self,
        dir: &Path,
        reference: &str,
    ) -> Result<ResolvedImage, ImageError> {
        let _writing = self.writing_blocking();
        let bad = |detail: String| ImageError::BadConfig {
            reference: reference.to_string(),
            detail,
        };
        let index: serde_json::Value = read_json(&dir.join("index.json"), None, &bad)?;
        let manifests = index["manifests"].as_array().cloned().unwrap_or_default();
        let [entry] = manifests.as_slice() else {
            return Err(bad(format!(
                "the layout holds {} manifests, not one",
                manifests.len()
            )));
        };
        let manifest_digest = checked_digest(&entry["digest"], &bad)?;
        let manifest_path = layout_blob(dir, &manifest_digest);
        let manifest: serde_json::Value = read_json(&manifest_path, Some(&manifest_digest), &bad)?;
        let config_digest = checked_digest(&manifest["config"]["digest"], &bad)?;
        let config_path = layout_blob(dir, &config_digest);
        let config_text = read_document(&config_path, Some(&config_digest), &bad)?;
        let config = ImageConfig::from_json(&config_text).map_err(|e| bad(e.to_string()))?;
        let diff_ids = crate::pull::diff_ids(&config_text);
        let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
        if layers.len() != diff_ids.len() {
            return Err(bad(format!(
                "{} layers but {} diff_ids in the config",
                layers.len(),
                diff_ids.len()
            )));
        }

        let known = self.layers_by_diff_id();
        let mut layer_digests = Vec::with_capacity(layers.len());
        for (layer, diff_id) in layers.iter().zip(&diff_ids) {
            let media_type = layer["mediaType"].as_str().unwrap_or_default().to_string();
            if !crate::pull::is_layer_media_type(&media_type) {
                return Err(ImageError::UnsupportedLayer {
                    reference: reference.to_string(),
                    media_type,
                });
            }
            let digest = checked_digest(&layer["digest"], &bad)?;
            if let Some(shared) = known.get(diff_id) {
                layer_digests.push(shared.clone());
                // The manifest still names this blob: keep it for pushes.
                self.take_blob(dir, &digest, &bad)?;
                continue;
            }
            let size = self.take_blob(dir, &digest, &bad)?;
            let dest = self.layer_dir(&digest);
            if !dest.is_dir() {
                unpack_layer(&self.blob_path(&digest), &dest).map_err(|source| {
                    ImageError::Unpack {
                        reference: reference.to_string(),
                        digest: digest.clone(),
                        source,
                    }
                })?;
            }
            self.remember_layer_blob(
                &digest,
                &LayerBlob {
                    media_type,
                    digest: digest.clone(),
                    size,
                    diff_id: diff_id.clone(),
                },
            )?;
            layer_digests.push(digest);
        }
        self.take_blob(dir, &config_digest, &bad)?;
        self.take_blob(dir, &manifest_digest, &bad)?;
        let image = ResolvedImage {
            reference: reference.to_string(),
            manifest_digest,
            config,
            layer_digests,
        };
        self.record(&image)?;
        Ok(image)
    }

    /// Moves a layout blob into the store once its content matches its digest; returns its
    /// size. A blob the store already has stays as it is.
    fn take_blob(
        &self,
        dir: &Path,
        digest: &str,
        bad: &dyn Fn(String) -> ImageError,
    ) -> Result<u64, ImageError> {
        let target = self.blob_path(digest);
        if let Ok(meta) = fs::metadata(&target) {
            return Ok(meta.len());
        }
        let source = layout_blob(dir, digest);
        let (actual, size) = hash_file(&source, None)?;
        if actual != digest {
            return Err(bad(format!(
                "blob {digest} holds content of digest {actual}"
            )));
        }
        fs::rename(&source, &target)
            .or_else(|_| fs::copy(&source, &target).map(|_| ()))
            .map_err(io_err(&target))?;
        Ok(size)
    }

    /// Unpacked layers by the digest of their uncompressed tarball, from what pulls and
    /// imports remembered.
    fn layers_by_diff_id(&self) -> HashMap<String, String> {
        let Ok(entries) = fs::read_dir(self.root().join("layer-blobs")) else {
            return HashMap::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let blob: LayerBlob =
                    serde_json::from_str(&fs::read_to_string(e.path()).ok()?).ok()?;
                let layer = format!("sha256:{}", e.path().file_stem()?.to_str()?);
                self.layer_dir(&layer)
                    .is_dir()
                    .then_some((blob.diff_id, layer))
            })
            .collect()
    }
}

/// `blobs/sha256/<hex>` of a layout, from a digest already checked to be one.
fn layout_blob(dir: &Path, digest: &str) -> PathBuf {
    dir.join("blobs/sha256").join(digest_hex(digest))
}

fn checked_digest(
    value: &serde_json::Value,
    bad: &dyn Fn(String) -> ImageError,
) -> Result<String, ImageError> {
    let digest = value.as_str().unwrap_or_default();
    let ok = digest.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if ok {
        Ok(digest.to_string())
    } else {
        Err(bad(format!("{value} is not a sha256 digest")))
    }
}

/// SHA-256 and size of a file, reading at most `limit` bytes when given.
fn hash_file(path: &Path, limit: Option<u64>) -> Result<(String, u64), ImageError> {
    let file = fs::File::open(path).map_err(io_err(path))?;
    let mut reader: Box<dyn Read> = match limit {
        Some(limit) => Box::new(file.take(limit + 1)),
        None => Box::new(file),
    };
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut reader, &mut hasher).map_err(io_err(path))?;
    Ok((format!("sha256:{}", hex::encode(hasher.finalize())), size))
}

/// A small document of the layout, checked against `digest` when it has one.
fn read_document(
    path: &Path,
    digest: Option<&str>,
    bad: &dyn Fn(String) -> ImageError,
) -> Result<String, ImageError> {
    let (actual, size) = hash_file(path, Some(MAX_DOCUMENT_BYTES))?;
    if size > MAX_DOCUMENT_BYTES {
        return Err(bad(format!(
            "{} is over {} MiB",
            path.display(),
            MAX_DOCUMENT_BYTES >> 20
        )));
    }
    if let Some(digest) = digest.filter(|d| *d != actual) {
        return Err(bad(format!(
            "blob {digest} holds content of digest {actual}"
        )));
    }
    fs::read_to_string(path).map_err(io_err(path))
}

fn read_json(
    path: &Path,
    digest: Option<&str>,
    bad: &dyn Fn(String) -> ImageError,
) -> Result<serde_json::Value, ImageError> {
    let text = read_document(path, digest, bad)?;
    serde_json::from_str(&text).map_err(|e| bad(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Writes `data` as a blob of the layout; returns its digest.
    fn blob(dir: &Path, data: &[u8]) -> String {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(data)));
        let path = layout_blob(dir, &digest);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, data).expect("write");
        digest
    }

    fn layer_tar(name: &str, text: &str) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_cksum();
        builder
            .append_data(&mut header, name, text.as_bytes())
            .expect("append");
        builder.into_inner().expect("tar")
    }

    /// A layout of one image with the given layers (uncompressed tars).
    fn layout(dir: &Path, layers: &[Vec<u8>]) -> String {
        let digests: Vec<String> = layers.iter().map(|l| blob(dir, l)).collect();
        let config = json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["httpd"], "ExposedPorts": {"8080/tcp": {}}, "User": "1000"},
            "rootfs": {"type": "layers", "diff_ids": digests},
        });
        let config_digest = blob(dir, config.to_string().as_bytes());
        let manifest = json!({
            "schemaVersion": 2,
            "config": {"mediaType": crate::oci::CONFIG_MEDIA_TYPE, "digest": config_digest, "size": 1},
            "layers": digests.iter().map(|d| json!({"mediaType": crate::oci::LAYER_TAR_MEDIA_TYPE, "digest": d, "size": 1})).collect::<Vec<_>>(),
        });
        let manifest_digest = blob(dir, manifest.to_string().as_bytes());
        let index = json!({"schemaVersion": 2, "manifests": [{"digest": manifest_digest}]});
        fs::write(dir.join("index.json"), index.to_string()).expect("index");
        manifest_digest
    }

    #[test]
    fn an_image_is_imported_with_its_config_and_layers() {
        let store_dir = tempfile::tempdir().expect("tempdir");
        let store = ContentStore::open(store_dir.path()).expect("store");
        let out = tempfile::tempdir().expect("tempdir");
        let manifest = layout(out.path(), &[layer_tar("srv/made.txt", "made")]);
        let image = store
            .import_oci_layout(out.path(), "berth-build/x")
            .expect("imports");
        assert_eq!(image.manifest_digest, manifest);
        assert_eq!(image.config.exposed_ports, [8080]);
        assert_eq!(image.config.user.as_deref(), Some("1000"));
        let layer = store.layer_dir(&image.layer_digests[0]);
        assert_eq!(
            fs::read_to_string(layer.join("srv/made.txt")).expect("file"),
            "made"
        );
        assert_eq!(store.lookup("berth-build/x"), Some(image));
        assert!(store.blob_path(&manifest).is_file(), "kept for pushes");
    }

    #[test]
    fn a_layer_a_pulled_image_has_is_shared() {
        let store_dir = tempfile::tempdir().expect("tempdir");
        let store = ContentStore::open(store_dir.path()).expect("store");
        let base = layer_tar("bin/sh", "shell");
        let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&base)));
        // As a pull leaves it: unpacked under its compressed digest, with its diff_id.
        let pulled = format!("sha256:{}", "e".repeat(64));
        fs::create_dir_all(store.layer_dir(&pulled)).expect("mkdir");
        store
            .remember_layer_blob(
                &pulled,
                &LayerBlob {
                    media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                    digest: pulled.clone(),
                    size: 1,
                    diff_id,
                },
            )
            .expect("remember");
        let out = tempfile::tempdir().expect("tempdir");
        layout(out.path(), &[base, layer_tar("app", "mine")]);
        let image = store
            .import_oci_layout(out.path(), "berth-build/y")
            .expect("imports");
        assert_eq!(image.layer_digests[0], pulled);
        assert_ne!(image.layer_digests[1], pulled);
    }

    #[test]
    fn a_blob_that_is_not_its_digest_is_refused_and_nothing_recorded() {
        let store_dir = tempfile::tempdir().expect("tempdir");
        let store = ContentStore::open(store_dir.path()).expect("store");
        let out = tempfile::tempdir().expect("tempdir");
        let layer = layer_tar("a", "b");
        layout(out.path(), std::slice::from_ref(&layer));
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&layer)));
        fs::write(layout_blob(out.path(), &digest), b"tampered").expect("tamper");
        let err = store
            .import_oci_layout(out.path(), "berth-build/z")
            .expect_err("refused")
            .to_string();
        assert!(err.contains("holds content of digest"), "{err}");
        assert_eq!(store.lookup("berth-build/z"), None);
    }

    #[test]
    fn a_hostile_layer_is_refused() {
        let store_dir = tempfile::tempdir().expect("tempdir");
        let store = ContentStore::open(store_dir.path()).expect("store");
        let out = tempfile::tempdir().expect("tempdir");
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..12].copy_from_slice(b"../../escape");
        header.set_size(1);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_cksum();
        builder.append(&header, &b"x"[..]).expect("append");
        layout(out.path(), &[builder.into_inner().expect("tar")]);
        let err = store
            .import_oci_layout(out.path(), "berth-build/h")
            .expect_err("refused");
        assert!(matches!(err, ImageError::Unpack { .. }), "{err}");
        assert!(!store_dir.path().join("../escape").exists());
    }
}
