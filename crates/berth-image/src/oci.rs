//! Built images as OCI images in the store: each layer directory as a layer tarball (overlay
//! whiteouts turned back into OCI `.wh.` entries), an image config and a manifest, so a
//! built image can be pushed like any other.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::io_err;
use crate::store::digest_hex;
use crate::{ContentStore, ImageConfig, ImageError};

type LockMap = std::collections::HashMap<String, std::sync::Arc<std::sync::Mutex<()>>>;

static TAR_LOCKS: std::sync::LazyLock<std::sync::Mutex<LockMap>> =
    std::sync::LazyLock::new(Default::default);

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_TAR_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

/// A layer as a blob: what a manifest lists and a config's `diff_ids` names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerBlob {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    /// Digest of the uncompressed tarball.
    pub diff_id: String,
}

impl ContentStore {
    fn layer_blob_record(&self, layer: &str) -> std::path::PathBuf {
        self.root()
            .join("layer-blobs")
            .join(format!("{}.json", digest_hex(layer)))
    }

    pub(crate) fn remember_layer_blob(
        &self,
        layer: &str,
        blob: &LayerBlob,
    ) -> Result<(), ImageError> {
        let path = self.layer_blob_record(layer);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let text = serde_json::to_vec(blob).map_err(|e| ImageError::Io {
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        fs::write(&path, text).map_err(io_err(&path))
    }

    /// The blob of an unpacked layer, tarring the directory the first time it is asked.
    pub fn layer_blob(&self, layer: &str) -> Result<LayerBlob, ImageError> {
        let known = || -> Option<LayerBlob> {
            serde_json::from_str(&fs::read_to_string(self.layer_blob_record(layer)).ok()?).ok()
        };
        if let Some(blob) = known() {
            return Ok(blob);
        }
        // Concurrent builds over the same base tar each layer once.
        let lock = {
            let mut locks = TAR_LOCKS.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(digest_hex(layer)).or_default().clone()
        };
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(blob) = known() {
            return Ok(blob);
        }
        let dir = self.layer_dir(layer);
        let tmp = self.tmp_path(&format!("tar-{}", digest_hex(layer)));
        let written = (|| -> io::Result<(String, u64)> {
            let file = fs::File::create(&tmp)?;
            let mut hashing = HashingWriter::new(io::BufWriter::new(file));
            write_layer_tar(&dir, &mut hashing)?;
            let (digest, size, mut inner) = hashing.finish();
            inner.flush()?;
            Ok((digest, size))
        })();
        let (digest, size) = match written {
            Ok(done) => done,
            Err(source) => {
                let _ = fs::remove_file(&tmp);
                return Err(ImageError::Io { path: dir, source });
            }
        };
        let blob_path = self.blob_path(&digest);
        fs::rename(&tmp, &blob_path).map_err(io_err(&blob_path))?;
        let blob = LayerBlob {
            media_type: LAYER_TAR_MEDIA_TYPE.into(),
            digest: digest.clone(),
            size,
            diff_id: digest,
        };
        self.remember_layer_blob(layer, &blob)?;
        Ok(blob)
    }

    /// Writes a JSON document as a blob; returns (digest, size).
    pub(crate) fn write_json_blob(
        &self,
        value: &serde_json::Value,
    ) -> Result<(String, u64), ImageError> {
        let bytes = serde_json::to_vec(value).map_err(|e| ImageError::BadConfig {
            reference: "built image".into(),
            detail: e.to_string(),
        })?;
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        let path = self.blob_path(&digest);
        fs::write(&path, &bytes).map_err(io_err(&path))?;
        Ok((digest, bytes.len() as u64))
    }

    /// Writes the OCI config and manifest of an image made of `layers`; returns the
    /// manifest digest.
    pub fn write_oci_image(
        &self,
        config: &ImageConfig,
        layers: &[String],
    ) -> Result<String, ImageError> {
        let blobs: Vec<LayerBlob> = layers
            .iter()
            .map(|l| self.layer_blob(l))
            .collect::<Result<_, _>>()?;
        let exposed: serde_json::Map<String, serde_json::Value> = config
            .exposed_ports
            .iter()
            .map(|p| (format!("{p}/tcp"), json!({})))
            .collect();
        let mut runtime_config = json!({
            "Env": config.env,
            "Entrypoint": (!config.entrypoint.is_empty()).then_some(&config.entrypoint),
            "Cmd": (!config.cmd.is_empty()).then_some(&config.cmd),
            "WorkingDir": config.working_dir,
            "User": config.user,
            "ExposedPorts": exposed,
        });
        // Only when set, so images built before it was kept keep their digests.
        if let Some(signal) = &config.stop_signal {
            runtime_config["StopSignal"] = json!(signal);
        }
        let config_doc = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": runtime_config,
            "rootfs": {"type": "layers", "diff_ids": blobs.iter().map(|b| &b.diff_id).collect::<Vec<_>>()},
        });
        let (config_digest, config_size) = self.write_json_blob(&config_doc)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config_size},
            "layers": blobs.iter().map(|b| json!({"mediaType": b.media_type, "digest": b.digest, "size": b.size})).collect::<Vec<_>>(),
        });
        Ok(self.write_json_blob(&manifest)?.0)
    }
}

/// Tars an unpacked layer directory, turning overlay whiteouts (0:0 character devices) into
/// `.wh.<name>` entries and opaque directories into `.wh..wh..opq` entries.
fn write_layer_tar(dir: &Path, out: &mut impl Write) -> io::Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    append_tree(&mut builder, dir, Path::new(""))?;
    builder.finish()
}

fn append_tree<W: Write>(builder: &mut tar::Builder<W>, root: &Path, rel: &Path) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(root.join(rel))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = rel.join(entry.file_name());
        let path = entry.path();
        let meta = fs::symlink_metadata(&path)?;
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            let wh = rel.join(format!(".wh.{}", entry.file_name().to_string_lossy()));
            append_empty(builder, &wh)?;
        } else if ft.is_dir() {
            builder.append_path_with_name(&path, &name)?;
            if xattr::get(&path, "trusted.overlay.opaque")
                .ok()
                .flatten()
                .as_deref()
                == Some(b"y")
            {
                append_empty(builder, &name.join(".wh..wh..opq"))?;
            }
            append_tree(builder, root, &name)?;
        } else if ft.is_file() || ft.is_symlink() {
            builder.append_path_with_name(&path, &name)?;
        } else if ft.is_fifo() {
            // A named pipe a step made stays one in the layer, as in Docker's.
            let mut header = tar::Header::new_gnu();
            header.set_metadata(&meta);
            header.set_entry_type(tar::EntryType::Fifo);
            header.set_size(0);
            builder.append_data(&mut header, &name, io::empty())?;
        }
        // Sockets and real devices do not belong in an image layer.
    }
    Ok(())
}

fn append_empty<W: Write>(builder: &mut tar::Builder<W>, name: &Path) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(0);
    header.set_mode(0o644);
    header.set_mtime(0);
    builder.append_data(&mut header, name, io::empty())
}

struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    fn finish(self) -> (String, u64, W) {
        (
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.size,
            self.inner,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_tar_round_trips_through_unpack_with_whiteouts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ContentStore::open(dir.path().join("store")).expect("store");
        let layer = format!("sha256:{}", "e".repeat(64));
        let src = store.layer_dir(&layer);
        fs::create_dir_all(src.join("etc/opaque")).expect("mkdir");
        fs::write(src.join("etc/hello"), "hi").expect("write");
        std::os::unix::fs::symlink("hello", src.join("etc/link")).expect("symlink");
        nix::sys::stat::mknod(
            &src.join("etc/gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            nix::sys::stat::makedev(0, 0),
        )
        .expect("whiteout");
        xattr::set(src.join("etc/opaque"), "trusted.overlay.opaque", b"y").expect("xattr");
        nix::unistd::mkfifo(
            &src.join("etc/pipe"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .expect("fifo");

        let blob = store.layer_blob(&layer).expect("tars");
        assert_eq!(blob.media_type, LAYER_TAR_MEDIA_TYPE);
        assert_eq!(store.layer_blob(&layer).expect("cached"), blob);
        let copy = dir.path().join("copy");
        crate::unpack_layer(&store.blob_path(&blob.digest), &copy).expect("unpacks");
        assert_eq!(
            fs::read_to_string(copy.join("etc/hello")).expect("read"),
            "hi"
        );
        assert!(fs::symlink_metadata(copy.join("etc/link"))
            .expect("link")
            .file_type()
            .is_symlink());
        assert!(fs::symlink_metadata(copy.join("etc/pipe"))
            .expect("pipe")
            .file_type()
            .is_fifo());
        assert!(fs::symlink_metadata(copy.join("etc/gone"))
            .expect("wh")
            .file_type()
            .is_char_device());
        assert_eq!(
            xattr::get(copy.join("etc/opaque"), "trusted.overlay.opaque").expect("xattr"),
            Some(b"y".to_vec())
        );
    }
}
