//! The container's root filesystem: an overlay of shared read-only layers with a private
//! upper directory.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::io_err;
use crate::RuntimeError;

/// Mounts `layers` (bottom first) under `upper`/`work` at `target`.
pub fn mount_overlay(
    layers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), RuntimeError> {
    for dir in [upper, work, target] {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    // overlayfs lists lower directories top first.
    let lower: Vec<String> = if layers.is_empty() {
        // An image with no layers still needs one lower directory.
        let empty = work.with_file_name("empty-lower");
        std::fs::create_dir_all(&empty).map_err(io_err(&empty))?;
        vec![escape(&empty)]
    } else {
        layers.iter().rev().map(|l| escape(l)).collect()
    };
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        escape(upper),
        escape(work)
    );
    // The kernel takes mount options in one page.
    if options.len() >= 4096 {
        return Err(RuntimeError::TooManyLayers {
            path: target.to_path_buf(),
            len: options.len(),
            layers: layers.len(),
        });
    }
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::MS_NODEV,
        Some(options.as_str()),
    )
    .map_err(|source| RuntimeError::Mount {
        path: target.to_path_buf(),
        source,
    })
}

/// Detaches the mount at `target`; not mounted is fine.
pub fn unmount(target: &Path) -> Result<(), RuntimeError> {
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
        Err(source) => Err(RuntimeError::Mount {
            path: target.to_path_buf(),
            source,
        }),
    }
}

/// overlayfs separates options with ',' and lower directories with ':'.
fn escape(path: &Path) -> String {
    path.display()
        .to_string()
        .replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace(':', "\\:")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_separators_are_escaped() {
        assert_eq!(escape(Path::new("/a,b:c")), "/a\\,b\\:c");
    }
}
