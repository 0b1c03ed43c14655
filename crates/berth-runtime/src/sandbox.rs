//! The one way a container's sandbox is laid out on disk, for pods and build steps alike:
//! overlay root filesystem, the `/etc` files berth owns, the OCI spec, the bundle; and the
//! exact undoing of all of it. The network namespace comes ready from berth-net.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::error::io_err;
use crate::{
    build_spec, mount_overlay, resolve_user, write_bundle, BindMount, ResourceLimits, RunSpec,
};
use crate::{OciRuntime, RuntimeError};

/// The paths inside a container's own directory.
#[derive(Debug, Clone)]
pub struct SandboxDir {
    dir: PathBuf,
}

/// Sub-directories that hold the sandbox's filesystem; logs and the exit record beside them
/// outlive the container.
const FILESYSTEM_DIRS: [&str; 5] = ["bundle", "upper", "work", "etc", "empty-lower"];

impl SandboxDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SandboxDir { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn bundle(&self) -> PathBuf {
        self.dir.join("bundle")
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("bundle/rootfs")
    }

    fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }

    fn work(&self) -> PathBuf {
        self.dir.join("work")
    }

    fn etc(&self) -> PathBuf {
        self.dir.join("etc")
    }
}

/// The process a sandbox runs.
#[derive(Debug, Clone)]
pub struct ProcessPlan {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    /// The image's USER, resolved against the root filesystem's own /etc/passwd; `None` is root.
    pub user: Option<String>,
}

/// Everything needed to lay out one sandbox.
#[derive(Debug, Clone)]
pub struct SandboxPlan {
    pub id: String,
    pub dir: SandboxDir,
    /// Read-only lower layers, bottom first.
    pub layers: Vec<PathBuf>,
    /// Where the container's writes go; `None` for a private directory in the sandbox. Build
    /// steps pass their own, which becomes the step's layer.
    pub upper: Option<PathBuf>,
    pub netns: PathBuf,
    pub hostname: String,
    /// The container's addresses, named in its /etc/hosts.
    pub addrs: Vec<IpAddr>,
    /// The text of the container's /etc/resolv.conf.
    pub resolv_conf: String,
    pub process: ProcessPlan,
    pub limits: ResourceLimits,
    pub binds: Vec<BindMount>,
    /// Relative to the cgroup roots, like `/berth/<id>`.
    pub cgroups_path: String,
    /// Filter syscalls with the default seccomp profile (runc; gVisor filters on its own).
    pub seccomp: bool,
    /// Bind the root filesystem's own `/tmp` over itself. gVisor mounts a tmpfs in the
    /// sandbox's memory over an empty `/tmp` unless the spec mounts something there; the
    /// bind keeps `/tmp` on disk, as under runc, where files copied in from outside are seen.
    pub tmp_on_disk: bool,
    /// The root filesystem read-only, with a tmpfs at `/tmp`.
    pub read_only_rootfs: bool,
    /// Cap the writable layer at this many MiB (a filesystem of its own; see [`crate::disk`]).
    pub disk_mib: Option<u64>,
}

/// Mounts the root filesystem, writes the `/etc` files and the OCI bundle. On error the
/// caller undoes it with [`remove`], which copes with any half-way state.
pub fn prepare(plan: &SandboxPlan) -> Result<(), RuntimeError> {
    let dir = &plan.dir;
    for d in [dir.bundle(), dir.etc()] {
        std::fs::create_dir_all(&d).map_err(io_err(&d))?;
    }
    let (upper, work) = match (&plan.upper, plan.disk_mib) {
        (Some(upper), _) => (upper.clone(), dir.work()),
        // overlayfs needs upper and work on the same filesystem: both go on the capped one.
        (None, Some(mib)) => {
            let disk = crate::disk::create(dir.path(), mib)?;
            (disk.join("upper"), disk.join("work"))
        }
        (None, None) => (dir.upper(), dir.work()),
    };
    let rootfs = dir.rootfs();
    mount_overlay(&plan.layers, &upper, &work, &rootfs)?;
    let (uid, gid, additional_gids) = resolve_user(&rootfs, plan.process.user.as_deref())?;
    let etc_files = write_etc_files(&dir.etc(), plan)?;
    let mut binds = plan.binds.clone();
    if plan.tmp_on_disk {
        binds.extend(tmp_bind(&rootfs)?);
    }
    let run = RunSpec {
        id: plan.id.clone(),
        args: plan.process.args.clone(),
        env: plan.process.env.clone(),
        cwd: plan.process.cwd.clone(),
        uid,
        gid,
        additional_gids,
        hostname: plan.hostname.clone(),
        netns: plan.netns.clone(),
        limits: plan.limits,
        cgroups_path: plan.cgroups_path.clone(),
        etc_files,
        binds,
        seccomp: plan.seccomp,
        read_only_rootfs: plan.read_only_rootfs,
    };
    write_bundle(&dir.bundle(), &build_spec(&run)?)
}

/// `/tmp` of the root filesystem bound over itself; none when the image's `/tmp` is not a
/// plain directory (a symlink there would point the bind's host-side source elsewhere).
fn tmp_bind(rootfs: &Path) -> Result<Option<BindMount>, RuntimeError> {
    let tmp = rootfs.join("tmp");
    match std::fs::symlink_metadata(&tmp) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(&tmp).map_err(io_err(&tmp))?;
            std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o1777))
                .map_err(io_err(&tmp))?;
        }
        Err(e) => return Err(io_err(&tmp)(e)),
    }
    Ok(Some(BindMount {
        source: tmp,
        destination: "/tmp".into(),
        read_only: false,
    }))
}

/// /etc/hosts, /etc/hostname and /etc/resolv.conf, bind-mounted read-only over the image's.
fn write_etc_files(
    etc: &Path,
    plan: &SandboxPlan,
) -> Result<Vec<(PathBuf, &'static str)>, RuntimeError> {
    let mut hosts =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for addr in &plan.addrs {
        hosts.push_str(&format!("{addr}\t{}\n", plan.hostname));
    }
    let files = [
        ("hosts", "/etc/hosts", hosts),
        ("hostname", "/etc/hostname", format!("{}\n", plan.hostname)),
        ("resolv.conf", "/etc/resolv.conf", plan.resolv_conf.clone()),
    ];
    let mut mounts = Vec::with_capacity(files.len());
    for (name, target, text) in files {
        let path = etc.join(name);
        std::fs::write(&path, text).map_err(io_err(&path))?;
        mounts.push((path, target));
    }
    Ok(mounts)
}

/// Removes what [`prepare`] and a run left: the runtime's record, the cgroup, the root
/// filesystem mount and its directories. Logs and the exit record stay. Idempotent; every
/// step is tried and the first error is returned.
pub fn remove(
    runtime: &OciRuntime,
    id: &str,
    dir: &SandboxDir,
    cgroups_path: &str,
) -> Result<(), RuntimeError> {
    let mut first: Option<RuntimeError> = None;
    if let Err(e) = runtime.delete(id) {
        first.get_or_insert(e);
    }
    // runc removes the container's cgroup on delete; runsc leaves some hierarchies behind.
    crate::remove_empty_cgroup(cgroups_path);
    if let Err(e) = crate::unmount(&dir.rootfs()) {
        first.get_or_insert(e);
    }
    if let Err(e) = crate::disk::remove(dir.path()) {
        first.get_or_insert(e);
    }
    for sub in FILESYSTEM_DIRS {
        let path = dir.path().join(sub);
        if path.exists() {
            if let Err(e) = std::fs::remove_dir_all(&path) {
                first.get_or_insert(RuntimeError::Io { path, source: e });
            }
        }
    }
    first.map_or(Ok(()), Err)
}

/// Hostnames are limited to 63 characters; a container id's tail is unique enough.
pub fn hostname_for(id: &str) -> String {
    let start = id.len().saturating_sub(63);
    id.get(start..)
        .unwrap_or(id)
        .trim_start_matches('-')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_keep_the_unique_tail() {
        assert_eq!(hostname_for("pod-abc"), "pod-abc");
        let long = format!("pod-{}-{}", "a".repeat(36), "b".repeat(30));
        let h = hostname_for(&long);
        assert!(h.len() <= 63);
        assert!(h.ends_with(&"b".repeat(30)));
        assert!(!h.starts_with('-'));
    }

    #[test]
    fn etc_files_name_the_pod() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plan = SandboxPlan {
            id: "pod-x".into(),
            dir: SandboxDir::new(dir.path()),
            layers: Vec::new(),
            upper: None,
            netns: "/run/netns/x".into(),
            hostname: "x".into(),
            addrs: vec!["10.0.0.2".parse().expect("ip")],
            resolv_conf: "nameserver 10.0.0.1\n".into(),
            process: ProcessPlan {
                args: vec!["true".into()],
                env: Vec::new(),
                cwd: "/".into(),
                user: None,
            },
            limits: ResourceLimits {
                cpu_millis: 1000,
                memory_mib: 64,
                pids: 64,
            },
            binds: Vec::new(),
            cgroups_path: "/berth/pod-x".into(),
            seccomp: true,
            tmp_on_disk: false,
            read_only_rootfs: false,
            disk_mib: None,
        };
        let mounts = write_etc_files(dir.path(), &plan).expect("writes");
        assert_eq!(mounts.len(), 3);
        let hosts = std::fs::read_to_string(dir.path().join("hosts")).expect("hosts");
        assert!(hosts.contains("10.0.0.2\tx\n"));
        let resolv = std::fs::read_to_string(dir.path().join("resolv.conf")).expect("resolv");
        assert_eq!(resolv, "nameserver 10.0.0.1\n");
    }
}
