//! The content store: verified blobs by digest, each layer unpacked once and shared
//! read-only, and the resolution of references already pulled.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::io_err;
use crate::{ImageConfig, ImageError};

/// An image ready to run: its config and its unpacked layers, bottom first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedImage {
    pub reference: String,
    pub manifest_digest: String,
    pub config: ImageConfig,
    pub layer_digests: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
    /// Pulls and builds hold it shared while they write blobs and layers not yet recorded;
    /// prune holds it alone, so it never removes what is being made.
    gc: std::sync::Arc<tokio::sync::RwLock<()>>,
}

impl ContentStore {
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ImageError> {
        let root = root.into();
        for dir in ["blobs/sha256", "layers", "refs", "tmp", "build-cache"] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(io_err(&path))?;
        }
        // Leftovers of an interrupted pull or build: never referenced, safe to drop.
        if let Ok(entries) = std::fs::read_dir(root.join("tmp")) {
            for entry in entries.flatten() {
                let path = entry.path();
                let _ = std::fs::remove_file(&path).or_else(|_| std::fs::remove_dir_all(&path));
            }
        }
        Ok(ContentStore {
            root,
            gc: Default::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(digest_hex(digest))
    }

    /// Directory of the unpacked layer with this (compressed) digest.
    pub fn layer_dir(&self, digest: &str) -> PathBuf {
        self.root.join("layers").join(digest_hex(digest))
    }

    pub fn layer_dirs(&self, image: &ResolvedImage) -> Vec<PathBuf> {
        image
            .layer_digests
            .iter()
            .map(|d| self.layer_dir(d))
            .collect()
    }

    /// Marks a layer as a build cache entry, which `prune` keeps.
    pub fn mark_build_layer(&self, digest: &str) {
        let _ = std::fs::write(self.root.join("build-cache").join(digest_hex(digest)), b"");
    }

    fn is_build_layer(&self, hex: &str) -> bool {
        self.root.join("build-cache").join(hex).exists()
    }

    /// Every image recorded in the store.
    pub fn images(&self) -> Vec<ResolvedImage> {
        let Ok(entries) = std::fs::read_dir(self.root.join("refs")) else {
            return Vec::new();
        };
        let mut images: Vec<ResolvedImage> = entries
            .flatten()
            .filter_map(|e| serde_json::from_str(&std::fs::read_to_string(e.path()).ok()?).ok())
            .collect();
        images.sort_by(|a, b| a.reference.cmp(&b.reference));
        images
    }

    /// Bytes the image's layers take on disk (shared layers count for each image).
    pub fn image_size(&self, image: &ResolvedImage) -> u64 {
        self.layer_dirs(image).iter().map(|d| dir_size(d)).sum()
    }

    /// Drops pulled images whose reference `keep` refuses, then every layer and blob that
    /// no remaining image and no build cache entry references.
    /// Holds off `prune` while a blocking pull or build writes (see `gc`).
    pub fn writing_blocking(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.gc.blocking_read()
    }

    /// Holds off `prune` while an async pull writes (see `gc`).
    pub async fn writing(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.gc.read().await
    }

    /// Blobs an image's OCI manifest names (for built images, whose manifest is stored).
    fn manifest_blobs(&self, image: &ResolvedImage) -> Vec<String> {
        let Ok(bytes) = std::fs::read(self.blob_path(&image.manifest_digest)) else {
            return Vec::new();
        };
        let Ok(manifest) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            return Vec::new();
        };
        let mut blobs = vec![digest_hex(&image.manifest_digest)];
        let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
        for desc in layers.iter().chain(std::iter::once(&manifest["config"])) {
            if let Some(d) = desc["digest"].as_str() {
                blobs.push(digest_hex(d));
            }
        }
        blobs
    }

    /// Must run outside the async runtime (it waits for pulls and builds to finish).
    pub fn prune(&self, keep: &dyn Fn(&ResolvedImage) -> bool) -> Prune {
        let _alone = self.gc.blocking_write();
        let mut result = Prune::default();
        let mut kept_layers = std::collections::HashSet::new();
        for image in self.images() {
            let built = image
                .layer_digests
                .iter()
                .all(|d| self.is_build_layer(&digest_hex(d)))
                || image.reference.starts_with("berth-build/");
            if built || keep(&image) {
                kept_layers.extend(image.layer_digests.iter().map(|d| digest_hex(d)));
                kept_layers.extend(self.manifest_blobs(&image));
            } else {
                let _ = std::fs::remove_file(self.ref_path(&image.reference));
                result.removed_images.push(image.reference);
            }
        }
        for dir in ["layers", "blobs/sha256"] {
            let Ok(entries) = std::fs::read_dir(self.root.join(dir)) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if kept_layers.contains(&name) || self.is_build_layer(&name) {
                    continue;
                }
                let path = entry.path();
                let size = dir_size(&path);
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                if removed.is_ok() {
                    result.freed_bytes += size;
                    if dir == "layers" {
                        result.removed_layers += 1;
                    }
                }
            }
        }
        result
    }

    pub(crate) fn tmp_path(&self, name: &str) -> PathBuf {
        self.root.join("tmp").join(name)
    }

    fn ref_path(&self, reference: &str) -> PathBuf {
        let key = hex::encode(Sha256::digest(reference.as_bytes()));
        self.root.join("refs").join(format!("{key}.json"))
    }

    /// The image a reference resolved to before, if all its layers are still unpacked.
    pub fn lookup(&self, reference: &str) -> Option<ResolvedImage> {
        let text = std::fs::read_to_string(self.ref_path(reference)).ok()?;
        let image: ResolvedImage = serde_json::from_str(&text).ok()?;
        let complete = image
            .layer_digests
            .iter()
            .all(|d| self.layer_dir(d).is_dir());
        complete.then_some(image)
    }

    pub fn record(&self, image: &ResolvedImage) -> Result<(), ImageError> {
        let path = self.ref_path(&image.reference);
        // A name of its own per write: pods created together record the same image at once,
        // and a shared temporary file was renamed away under the others.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("json.{}.{n}.tmp", std::process::id()));
        let text = serde_json::to_vec_pretty(image).map_err(|e| ImageError::BadConfig {
            reference: image.reference.clone(),
            detail: e.to_string(),
        })?;
        std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))
    }
}

/// What `prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prune {
    pub removed_images: Vec<String>,
    pub removed_layers: usize,
    pub freed_bytes: u64,
}

fn dir_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}

/// The hex part of `sha256:<hex>`, refusing anything that could act as a path.
pub(crate) fn digest_hex(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex.to_ascii_lowercase()
    } else {
        // Not a sha256 digest: hash it so it still names one safe file.
        hex::encode(Sha256::digest(digest.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_image_recorded_at_once_from_many_threads_is_recorded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ContentStore::open(dir.path()).expect("opens");
        let image = ResolvedImage {
            reference: "127.0.0.1:5000/app:latest".into(),
            manifest_digest: format!("sha256:{}", "a".repeat(64)),
            config: ImageConfig::default(),
            layer_digests: vec![],
        };
        std::thread::scope(|s| {
            let writers: Vec<_> = (0..16).map(|_| s.spawn(|| store.record(&image))).collect();
            for writer in writers {
                writer.join().expect("joins").expect("records");
            }
        });
        assert_eq!(store.lookup(&image.reference), Some(image));
    }

    #[test]
    fn lookup_needs_every_layer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ContentStore::open(dir.path()).expect("opens");
        let layer = format!("sha256:{}", "b".repeat(64));
        let image = ResolvedImage {
            reference: "127.0.0.1:5000/app:latest".into(),
            manifest_digest: format!("sha256:{}", "a".repeat(64)),
            config: ImageConfig::default(),
            layer_digests: vec![layer.clone()],
        };
        store.record(&image).expect("records");
        assert_eq!(store.lookup(&image.reference), None);
        std::fs::create_dir_all(store.layer_dir(&layer)).expect("mkdir");
        assert_eq!(store.lookup(&image.reference), Some(image));
    }

    #[test]
    fn digests_never_escape_the_store() {
        assert_eq!(
            digest_hex(&format!("sha256:{}", "A".repeat(64))),
            "a".repeat(64)
        );
        assert_eq!(digest_hex("sha256:../../etc").len(), 64);
    }
}
