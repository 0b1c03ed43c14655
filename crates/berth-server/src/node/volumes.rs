//! Named volumes: plain directories under the node's state that outlive pods, created on
//! first use and bind-mounted read-write where a pod asks.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use berth_api::Volume;

use super::NodeError;

pub struct Volumes {
    dir: PathBuf,
}

impl Volumes {
    pub fn new(dir: PathBuf) -> Result<Self, NodeError> {
        std::fs::create_dir_all(&dir).map_err(NodeError::io(&dir))?;
        Ok(Volumes { dir })
    }

    /// The volume's directory, created on first use. Names are checked at the API edge;
    /// the check here keeps a bad one from ever naming a path outside.
    pub fn ensure(&self, name: &str) -> Result<PathBuf, NodeError> {
        let path = self.path(name)?;
        if !path.is_dir() {
            std::fs::create_dir(&path).map_err(NodeError::io(&path))?;
            // Any user an image runs as may write: the directory is the pod's, like /tmp.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))
                .map_err(NodeError::io(&path))?;
        }
        Ok(path)
    }

    pub fn list(&self) -> Result<Vec<Volume>, NodeError> {
        let mut volumes = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(NodeError::io(&self.dir))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if !meta.is_dir() {
                continue;
            }
            volumes.push(Volume {
                name: entry.file_name().to_string_lossy().into_owned(),
                size_bytes: tree_size(&path),
                created_at: std::os::unix::fs::MetadataExt::ctime(&meta),
            });
        }
        volumes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(volumes)
    }

    /// Removes the volume and its files; `false` if there was none.
    pub fn delete(&self, name: &str) -> Result<bool, NodeError> {
        let path = self.path(name)?;
        if !path.is_dir() {
            return Ok(false);
        }
        std::fs::remove_dir_all(&path).map_err(NodeError::io(&path))?;
        Ok(true)
    }

    fn path(&self, name: &str) -> Result<PathBuf, NodeError> {
        if !crate::spec::valid_volume_name(name) {
            return Err(NodeError::Plan(berth_api::ApiError::invalid(
                "volume",
                format!("{name:?} is not a volume name"),
            )));
        }
        Ok(self.dir.join(name))
    }
}

/// Bytes of the files under `path`, not following symlinks.
fn tree_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_volume_is_made_on_first_use_and_lists_its_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let volumes = Volumes::new(dir.path().join("volumes")).expect("volumes");
        let data = volumes.ensure("data").expect("ensure");
        std::fs::write(data.join("f"), b"12345").expect("write");
        assert_eq!(volumes.ensure("data").expect("again"), data);
        let list = volumes.list().expect("list");
        assert_eq!(list.len(), 1);
        assert_eq!((list[0].name.as_str(), list[0].size_bytes), ("data", 5));
        assert!(volumes.delete("data").expect("delete"));
        assert!(!volumes.delete("data").expect("gone"));
        assert!(volumes.ensure("../x").is_err());
    }
}
