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

/// Mount points of the root filesystems of pods in user namespaces, one per container id;
/// the directory holds nothing else.
pub const MAPPED_ROOTFS_DIR: &str = "/run/berth/pods";

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

    /// Where the root filesystem is mounted: in the bundle, or for a pod in a user
    /// namespace under [`MAPPED_ROOTFS_DIR`], whose every ancestor the pod's root may
    /// traverse (the runtime binds the root filesystem from inside the namespace, and the
    /// state directory is closed to every other user).
    pub fn rootfs(&self) -> PathBuf {
        if self.idmap_record().exists() {
            self.mapped_rootfs()
        } else {
            self.dir.join("bundle/rootfs")
        }
    }

    fn mapped_rootfs(&self) -> PathBuf {
        let name = self.dir.file_name().unwrap_or_default();
        Path::new(MAPPED_ROOTFS_DIR).join(name)
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

    /// Idmapped clones of the layers and writable binds of a pod in a user namespace.
    fn idmapped(&self) -> PathBuf {
        self.dir.join("idmapped")
    }

    /// The pod's user namespace, pinned.
    pub fn userns_file(&self) -> PathBuf {
        self.dir.join("userns")
    }

    /// What a pod in a user namespace maps, for those who reach its files from the host.
    pub fn idmap_record(&self) -> PathBuf {
        self.dir.join("idmapped.json")
    }
}

/// How a pod in a user namespace is mapped: its range, and the host directory behind each
/// idmapped bind the bundle names.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct IdmapRecord {
    pub host_start: u32,
    pub size: u32,
    /// (idmapped clone, the directory it shows)
    pub binds: Vec<(PathBuf, PathBuf)>,
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
    /// Run the pod in a user namespace mapping its ids to this host range (runc pods).
    pub user_namespace: Option<crate::IdRange>,
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
    let mut binds = plan.binds.clone();
    match plan.user_namespace {
        None => mount_overlay(&plan.layers, &upper, &work, &dir.rootfs())?,
        Some(range) => {
            std::fs::create_dir_all(&upper).map_err(io_err(&upper))?;
            map_ids(dir, range, &plan.layers, &upper, &work, &mut binds)?;
        }
    }
    let rootfs = dir.rootfs();
    let (uid, gid, additional_gids) = resolve_user(&rootfs, plan.process.user.as_deref())?;
    let etc_files = write_etc_files(&dir.etc(), plan)?;
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
        user_namespace: plan.user_namespace.map(|range| (range, dir.userns_file())),
        rootfs: rootfs.clone(),
    };
    write_bundle(&dir.bundle(), &build_spec(&run)?)
}

/// The root filesystem of a pod in a user namespace: each shared layer seen through an
/// idmapped mount (its root-owned files owned by the range's first id), under an upper
/// directory the range's root owns; writable binds (volumes) idmapped the same way, so what
/// the pod writes there is stored with the pod's own ids. Recorded for [`remove`] and for
/// file access from the host.
fn map_ids(
    dir: &SandboxDir,
    range: crate::IdRange,
    layers: &[PathBuf],
    upper: &Path,
    work: &Path,
    binds: &mut [BindMount],
) -> Result<(), RuntimeError> {
    let mut record = IdmapRecord {
        host_start: range.host_start,
        size: range.size,
        binds: Vec::new(),
    };
    let userns_file = dir.userns_file();
    let userns: std::os::fd::OwnedFd = std::fs::File::open(&userns_file)
        .map_err(io_err(&userns_file))?
        .into();
    let idmapped = dir.idmapped();
    let mut lowers = Vec::with_capacity(layers.len());
    for (i, layer) in layers.iter().enumerate() {
        let target = idmapped.join(format!("l{i}"));
        crate::idmap::idmapped_mount(layer, &target, &userns)?;
        lowers.push(target);
    }
    for (i, bind) in binds.iter_mut().enumerate() {
        if bind.read_only || !bind.source.is_dir() {
            continue;
        }
        let target = idmapped.join(format!("b{i}"));
        crate::idmap::idmapped_mount(&bind.source, &target, &userns)?;
        record
            .binds
            .push((target.clone(), std::mem::replace(&mut bind.source, target)));
    }
    write_idmap_record(dir, &record)?;
    // The pod's `/` is the upper directory's root: its root owns it.
    nix::unistd::chown(
        upper,
        Some(range.host(0).into()),
        Some(range.host(0).into()),
    )
    .map_err(|source| RuntimeError::Mount {
        path: upper.to_path_buf(),
        source,
    })?;
    let parent = Path::new(MAPPED_ROOTFS_DIR);
    std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    for dir in [parent, parent.parent().unwrap_or(parent)] {
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o711))
            .map_err(io_err(dir))?;
    }
    mount_overlay(&lowers, upper, work, &dir.mapped_rootfs())
}

/// Makes the user namespace of a pod (mapping `range`) and its network namespace, pinned at
/// the sandbox's `userns` file and at `netns`, for the network to be wired before
/// [`prepare`]. The range is recorded first, so [`remove`] finds what to undo however far
/// this got.
pub fn pin_namespaces(
    dir: &SandboxDir,
    range: crate::IdRange,
    netns: &Path,
) -> Result<(), RuntimeError> {
    std::fs::create_dir_all(dir.path()).map_err(io_err(dir.path()))?;
    write_idmap_record(
        dir,
        &IdmapRecord {
            host_start: range.host_start,
            size: range.size,
            binds: Vec::new(),
        },
    )?;
    crate::idmap::pin_namespaces(range, &dir.userns_file(), netns)
}

fn write_idmap_record(dir: &SandboxDir, record: &IdmapRecord) -> Result<(), RuntimeError> {
    let path = dir.idmap_record();
    let text = serde_json::to_vec(record).map_err(|e| RuntimeError::Spec(e.to_string()))?;
    std::fs::write(&path, text).map_err(io_err(&path))
}

/// How the pod in `dir` is mapped; `None` when it has no user namespace.
pub fn read_idmap_record(dir: &SandboxDir) -> std::io::Result<Option<IdmapRecord>> {
    match std::fs::read(dir.idmap_record()) {
        Ok(text) => serde_json::from_slice(&text)
            .map(Some)
            .map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Unmounts the idmapped clones and removes their (then empty) mount points; never
/// recursive, so a clone still mounted keeps what it shows.
fn unmap_ids(dir: &SandboxDir) -> Result<(), RuntimeError> {
    crate::idmap::unpin(&dir.userns_file())?;
    let idmapped = dir.idmapped();
    let Ok(entries) = std::fs::read_dir(&idmapped) else {
        let record = dir.idmap_record();
        return match std::fs::remove_file(&record) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&record)(e)),
            _ => Ok(()),
        };
    };
    for entry in entries.flatten() {
        let path = entry.path();
        crate::unmount(&path)?;
        std::fs::remove_dir(&path).map_err(io_err(&path))?;
    }
    std::fs::remove_dir(&idmapped).map_err(io_err(&idmapped))?;
    let record = dir.idmap_record();
    match std::fs::remove_file(&record) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&record)(e)),
        _ => Ok(()),
    }
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
    let rootfs = dir.rootfs();
    if let Err(e) = crate::unmount(&rootfs) {
        first.get_or_insert(e);
    }
    if rootfs.starts_with(MAPPED_ROOTFS_DIR) {
        if let Err(e) = std::fs::remove_dir(&rootfs) {
            if e.kind() != std::io::ErrorKind::NotFound {
                first.get_or_insert(RuntimeError::Io {
                    path: rootfs.clone(),
                    source: e,
                });
            }
        }
    }
    if let Err(e) = unmap_ids(dir) {
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
            user_namespace: None,
        };
        let mounts = write_etc_files(dir.path(), &plan).expect("writes");
        assert_eq!(mounts.len(), 3);
        let hosts = std::fs::read_to_string(dir.path().join("hosts")).expect("hosts");
        assert!(hosts.contains("10.0.0.2\tx\n"));
        let resolv = std::fs::read_to_string(dir.path().join("resolv.conf")).expect("resolv");
        assert_eq!(resolv, "nameserver 10.0.0.1\n");
    }
}
