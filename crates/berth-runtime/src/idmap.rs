//! User namespaces for pods: container root is an unprivileged range of host ids, and the
//! image's files (owned by real ids, shared by every pod) are seen through idmapped mounts,
//! so no layer is copied or chowned per pod.
//!
//! An idmapped mount needs a user namespace that carries the mapping; one is made by a
//! short-lived helper process (`unshare(CLONE_NEWUSER | CLONE_NEWNET)`, then the parent
//! writes its maps) and pinned by a bind mount, with the pod's network namespace, for the
//! runtime to join.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::io_err;
use crate::RuntimeError;

/// Host ids a pod's ids 0..size map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub host_start: u32,
    pub size: u32,
}

impl IdRange {
    /// The host id of the pod's `id`.
    pub fn host(&self, id: u32) -> u32 {
        self.host_start + id
    }
}

/// Whether pods can have user namespaces here: tried for real in `scratch` (a directory on
/// the filesystem that holds the layers), since a kernel or filesystem without idmapped
/// mounts only says so when asked. The error says what is missing.
pub fn probe(scratch: &Path) -> Result<(), RuntimeError> {
    let enabled = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .is_some_and(|max| max > 0);
    if !enabled {
        return Err(RuntimeError::Spec(
            "user namespaces are disabled (/proc/sys/user/max_user_namespaces is 0)".into(),
        ));
    }
    let dir = scratch.join(format!(".userns-probe-{}", std::process::id()));
    let (source, target) = (dir.join("source"), dir.join("target"));
    let (userns, netns) = (dir.join("userns"), dir.join("netns"));
    std::fs::create_dir_all(&source).map_err(io_err(&source))?;
    let range = IdRange {
        host_start: 1 << 30,
        size: 65536,
    };
    let tried = pin_namespaces(range, &userns, &netns).and_then(|()| {
        let ns = std::fs::File::open(&userns).map_err(io_err(&userns))?;
        idmapped_mount(&source, &target, &ns.into())
    });
    let _ = crate::unmount(&target);
    let _ = unpin(&userns);
    let _ = unpin(&netns);
    let _ = std::fs::remove_dir_all(&dir);
    tried
}

/// Makes a user namespace mapping `range` and a network namespace it owns, and pins them
/// (bind mounts of their nsfs files) at `userns_at` and `netns_at`. The network namespace
/// belongs to the pod's user namespace, so the runtime can enter both for `exec`, and the
/// pod's root may mount its own sysfs and bind low ports there; the host's root still
/// configures it (CNI, firewall rules), as the owner of every namespace.
pub fn pin_namespaces(
    range: IdRange,
    userns_at: &Path,
    netns_at: &Path,
) -> Result<(), RuntimeError> {
    let mut cmd = Command::new("sleep");
    cmd.arg("60")
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only unshare between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            // One call: the new network namespace is owned by the new user namespace.
            nix::sched::unshare(
                nix::sched::CloneFlags::CLONE_NEWUSER | nix::sched::CloneFlags::CLONE_NEWNET,
            )?;
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|source| RuntimeError::Spawn {
        binary: "sleep".into(),
        source,
    })?;
    let result = (|| {
        let proc = Path::new("/proc").join(child.id().to_string());
        // The helper has unshared once its ns link differs from ours; until then the maps
        // would be written to our own namespace and refused.
        let ours =
            std::fs::read_link("/proc/self/ns/user").map_err(io_err("/proc/self/ns/user"))?;
        let ns_link = proc.join("ns/user");
        for _ in 0..5000 {
            if std::fs::read_link(&ns_link).map_err(io_err(&ns_link))? != ours {
                break;
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        let map = format!("0 {} {}\n", range.host_start, range.size);
        for file in ["uid_map", "gid_map"] {
            let path = proc.join(file);
            std::fs::write(&path, &map).map_err(io_err(&path))?;
        }
        pin(&ns_link, userns_at)?;
        pin(&proc.join("ns/net"), netns_at)
    })();
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// Bind-mounts the namespace file `ns` onto a new file at `at`.
fn pin(ns: &Path, at: &Path) -> Result<(), RuntimeError> {
    if let Some(parent) = at.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    std::fs::File::create(at).map_err(io_err(at))?;
    nix::mount::mount(
        Some(ns),
        at,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|source| RuntimeError::Mount {
        path: at.to_path_buf(),
        source,
    })
}

/// Unpins what [`pin_namespaces`] pinned at `at`; not there is fine.
pub fn unpin(at: &Path) -> Result<(), RuntimeError> {
    crate::unmount(at)?;
    match std::fs::remove_file(at) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(at)(e)),
        _ => Ok(()),
    }
}

/// Mounts a clone of `source` at `target` (made if missing) with its ids mapped through
/// `userns`: a file owned by id N in `source` is owned by the namespace's host id for N.
pub fn idmapped_mount(source: &Path, target: &Path, userns: &OwnedFd) -> Result<(), RuntimeError> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    std::fs::create_dir_all(target).map_err(io_err(target))?;
    let mount_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source: nix::Error| RuntimeError::Mount { path, source }
    };
    let c_path = |p: &Path| {
        CString::new(p.as_os_str().as_bytes()).map_err(|_| RuntimeError::Mount {
            path: p.to_path_buf(),
            source: nix::Error::EINVAL,
        })
    };
    let src = c_path(source)?;
    let dst = c_path(target)?;
    // SAFETY: a valid C string; the kernel returns a new descriptor or -1.
    let tree = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src.as_ptr(),
            libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC as libc::c_uint,
        )
    };
    if tree < 0 {
        return Err(mount_err(source)(nix::Error::last()));
    }
    // SAFETY: the kernel just gave us this descriptor.
    let tree = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(tree as i32) };
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    let empty = c"";
    // SAFETY: valid descriptors and a mount_attr of the size passed.
    let set = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if set < 0 {
        return Err(mount_err(source)(nix::Error::last()));
    }
    // SAFETY: valid descriptor and C strings.
    let moved = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if moved < 0 {
        return Err(mount_err(target)(nix::Error::last()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn files_show_through_the_mapping() {
        if !nix::unistd::getuid().is_root() || probe(&std::env::temp_dir()).is_err() {
            eprintln!("skipped: needs root and user namespaces");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let source = dir.path().join("source");
        let target = dir.path().join("target");
        std::fs::create_dir(&source).expect("mkdir");
        std::fs::write(source.join("f"), "x").expect("write");
        nix::unistd::chown(&source.join("f"), Some(7.into()), Some(8.into())).expect("chown");
        let range = IdRange {
            host_start: 1_500_000_000,
            size: 65536,
        };
        let (userns, netns) = (dir.path().join("userns"), dir.path().join("netns"));
        pin_namespaces(range, &userns, &netns).expect("namespaces");
        let ns = std::fs::File::open(&userns).expect("open the userns");
        idmapped_mount(&source, &target, &ns.into()).expect("mount");
        let meta = std::fs::metadata(target.join("f")).expect("stat");
        let seen = (meta.uid(), meta.gid());
        crate::unmount(&target).expect("unmount");
        unpin(&userns).expect("unpin");
        unpin(&netns).expect("unpin");
        assert_eq!(seen, (range.host(7), range.host(8)));
    }
}
