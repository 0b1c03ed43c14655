//! A pod's disk cap: its writable layer (the overlay's upper and work directories) on an
//! ext4 filesystem of its own, in a sparse file in the sandbox mounted through a loop
//! device. A pod that fills it gets ENOSPC; the host's disk and other pods are untouched.
//! The file takes only the space written to it.

use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::statvfs::statvfs;

use crate::error::io_err;
use crate::RuntimeError;

/// Where the capped filesystem is mounted, in the sandbox directory.
pub const DISK_DIR: &str = "disk";
/// Its backing file, beside it.
pub const DISK_IMAGE: &str = "disk.img";

/// Makes and mounts a `mib` MiB filesystem for the sandbox in `dir`; returns its mount point.
pub fn create(dir: &Path, mib: u64) -> Result<PathBuf, RuntimeError> {
    let image = dir.join(DISK_IMAGE);
    let mount = dir.join(DISK_DIR);
    std::fs::create_dir_all(&mount).map_err(io_err(&mount))?;
    let file = std::fs::File::create(&image).map_err(io_err(&image))?;
    file.set_len(mib * 1024 * 1024).map_err(io_err(&image))?;
    drop(file);
    // No reserved blocks (the pod gets all of it) and no journal (the pod's writes are
    // scratch, gone with the pod); inode tables initialised lazily keep this fast.
    run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-m", "0", "-O", "^has_journal"])
            .args(["-E", "lazy_itable_init=1,nodiscard"])
            .arg(&image),
        &image,
    )?;
    // mount(8) sets the loop device to detach itself when the filesystem is unmounted.
    run(
        Command::new("mount")
            .args(["-o", "loop,nodev,nosuid"])
            .arg(&image)
            .arg(&mount),
        &mount,
    )?;
    Ok(mount)
}

/// Unmounts the sandbox's capped filesystem and removes its file; none is fine.
pub fn remove(dir: &Path) -> Result<(), RuntimeError> {
    let mount = dir.join(DISK_DIR);
    crate::unmount(&mount)?;
    for path in [mount, dir.join(DISK_IMAGE)] {
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
    }
    Ok(())
}

/// Whether the sandbox in `dir` has a capped filesystem with (almost) no room left: less
/// than 1 MiB or 1% free.
pub fn is_full(dir: &Path) -> bool {
    let Ok(st) = statvfs(&dir.join(DISK_DIR)) else {
        return false;
    };
    let block = st.fragment_size();
    let (total, free) = (st.blocks() * block, st.blocks_available() * block);
    // An unmounted directory reports the host's filesystem; only a capped one counts.
    dir.join(DISK_IMAGE).exists() && (free < 1024 * 1024 || free * 100 < total)
}

fn run(cmd: &mut Command, path: &Path) -> Result<(), RuntimeError> {
    let out = cmd.output().map_err(io_err(path))?;
    if out.status.success() {
        return Ok(());
    }
    Err(RuntimeError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(format!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    })
}
