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
}

impl ContentStore {
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ImageError> {
        let root = root.into();
        for dir in ["blobs/sha256", "layers", "refs", "tmp"] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(io_err(&path))?;
        }
        // Leftovers of an interrupted pull: never referenced, safe to drop.
        if let Ok(entries) = std::fs::read_dir(root.join("tmp")) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(ContentStore { root })
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
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(image).map_err(|e| ImageError::BadConfig {
            reference: image.reference.clone(),
            detail: e.to_string(),
        })?;
        std::fs::write(&tmp, text).map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io_err(&path))
    }
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
