//! Files in a running pod, reached from the host: read, list and write, each path resolved
//! as the pod sees it and never outside it.
//!
//! A pod's path is looked up in its bundle's mounts (longest match): the root filesystem
//! (the overlay), a bind mount (a volume, the code directory, berth's `/etc` files), or a
//! kernel mount (`/proc`, `/dev`, `/sys`, tmpfs) that the host cannot see into. Inside a
//! directory root every lookup is `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS |
//! RESOLVE_NO_XDEV)`: the kernel treats the root as `/`, so `..` and symlinks a hostile pod
//! planted (absolute or relative) resolve inside the pod, magic links in a pod's `/proc`
//! are refused, and no mount on the host side is crossed. A write goes to a new file beside
//! its target and is renamed over it when complete, so a failed upload leaves nothing
//! half-written.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, renameat, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};
use nix::unistd::{fchown, unlinkat, Gid, Uid, UnlinkatFlags};
use oci_spec::runtime::Spec;

use crate::SandboxDir;

/// Entries a listing returns at most (the rest are left off and it says so).
pub const MAX_LIST_ENTRIES: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum PodFilesError {
    #[error("{path:?} is not a path in the pod: {why}")]
    Invalid { path: String, why: &'static str },
    #[error("{0} does not exist in the pod")]
    NotFound(String),
    #[error("{0} is a directory in the pod; name a file")]
    IsDirectory(String),
    #[error("{0} is not a regular file in the pod")]
    NotAFile(String),
    #[error("{0} is not a directory in the pod")]
    NotADirectory(String),
    #[error("{path} is on the pod's {what} mount, which is not reachable from outside the pod")]
    Unreachable { path: String, what: String },
    #[error("{0} is on a read-only mount of the pod")]
    ReadOnly(String),
    #[error("{path} in the pod: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the pod's bundle {path}: {message}")]
    Bundle { path: PathBuf, message: String },
}

/// What a listing says of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub name: String,
    pub kind: FileKind,
    pub size: u64,
    /// Permission bits (`0o755`), with setuid/setgid/sticky.
    pub mode: u32,
    /// Seconds since the epoch.
    pub modified: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Directory,
    Symlink,
    Other,
}

/// A directory's entries, sorted by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub entries: Vec<FileEntry>,
    /// More than [`MAX_LIST_ENTRIES`] were there.
    pub truncated: bool,
}

/// A regular file opened for reading.
pub struct OpenedFile {
    pub file: File,
    pub size: u64,
    pub mode: u32,
}

/// How one of the pod's mount points is reached from the host.
#[derive(Debug, Clone)]
enum Reach {
    /// A directory on the host that stands for the mount point; the pod's ids are stored
    /// there plus `shift` (the host range of a pod in a user namespace, on its root
    /// filesystem; 0 elsewhere).
    Dir {
        host: PathBuf,
        read_only: bool,
        shift: u32,
    },
    /// A single file bound into the pod (berth's `/etc` files): read only from here.
    File { host: PathBuf },
    /// proc, sysfs, tmpfs and the like: inside the pod only.
    Kernel { what: String },
}

/// A running pod's file system as the host reaches it.
#[derive(Debug, Clone)]
pub struct PodFiles {
    /// Mount points (as component lists) and how each is reached; the root filesystem is
    /// the empty list.
    mounts: Vec<(Vec<String>, Reach)>,
    /// Files written from outside belong to the pod's user.
    owner: (u32, u32),
}

impl PodFiles {
    /// The pod whose sandbox is `dir`, from the spec in its bundle.
    pub fn of(dir: &SandboxDir) -> Result<PodFiles, PodFilesError> {
        let bundle = dir.bundle();
        let config = bundle.join("config.json");
        let spec = Spec::load(&config).map_err(|e| PodFilesError::Bundle {
            path: config.clone(),
            message: e.to_string(),
        })?;
        let root = spec
            .root()
            .as_ref()
            .map(|r| bundle.join(r.path()))
            .unwrap_or_else(|| dir.rootfs());
        let read_only_root = spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false);
        let idmap = crate::sandbox::read_idmap_record(dir).map_err(|e| PodFilesError::Bundle {
            path: dir.idmap_record(),
            message: e.to_string(),
        })?;
        let mut mounts = vec![(
            Vec::new(),
            Reach::Dir {
                host: root.clone(),
                read_only: read_only_root,
                shift: idmap.as_ref().map_or(0, |r| r.host_start),
            },
        )];
        for mount in spec.mounts().iter().flatten() {
            let Some(at) = components(&mount.destination().to_string_lossy()) else {
                continue;
            };
            // A directory of the root filesystem bound over itself (gVisor's `/tmp`) is the
            // root filesystem: links in it resolve from the pod's `/`, as in the pod.
            if mount.source().as_deref() == Some(root.join(at.join("/")).as_path()) {
                continue;
            }
            let options = mount.options().clone().unwrap_or_default();
            let is_bind = mount.typ().as_deref() == Some("bind")
                || options.iter().any(|o| o == "bind" || o == "rbind");
            let reach = match mount.source() {
                Some(source) if is_bind && source.is_dir() => Reach::Dir {
                    // An idmapped bind is written through the directory it shows, where
                    // the pod's ids are stored as they are.
                    host: idmap
                        .iter()
                        .flat_map(|r| r.binds.iter())
                        .find(|(clone, _)| clone == source)
                        .map_or_else(|| source.clone(), |(_, original)| original.clone()),
                    read_only: options.iter().any(|o| o == "ro"),
                    shift: 0,
                },
                Some(source) if is_bind => Reach::File {
                    host: source.clone(),
                },
                _ => Reach::Kernel {
                    what: mount.typ().clone().unwrap_or_else(|| "kernel".into()),
                },
            };
            mounts.push((at, reach));
        }
        let owner = spec
            .process()
            .as_ref()
            .map(|p| (p.user().uid(), p.user().gid()))
            .unwrap_or((0, 0));
        Ok(PodFiles { mounts, owner })
    }

    /// Opens the regular file at `path` for reading.
    pub fn open(&self, path: &str) -> Result<OpenedFile, PodFilesError> {
        let fd = match self.locate(path)? {
            (Reach::File { host }, rest) if rest.is_empty() => {
                File::open(&host).map_err(io(path))?.into()
            }
            (Reach::File { .. }, _) => return Err(PodFilesError::NotFound(path.into())),
            (Reach::Dir { host, .. }, rest) => {
                // Non-blocking: opening a FIFO the pod made must not wait for a writer.
                resolve(&host, &rest, OFlag::O_RDONLY | OFlag::O_NONBLOCK, path)?
            }
            (Reach::Kernel { .. }, _) => unreachable!("locate refuses kernel mounts"),
        };
        let file = File::from(fd);
        let meta = file.metadata().map_err(io(path))?;
        if meta.is_dir() {
            return Err(PodFilesError::IsDirectory(path.into()));
        }
        if !meta.is_file() {
            return Err(PodFilesError::NotAFile(path.into()));
        }
        Ok(OpenedFile {
            size: meta.len(),
            mode: meta.permissions().mode() & 0o7777,
            file,
        })
    }

    /// The entries of the directory at `path`.
    pub fn list(&self, path: &str) -> Result<Listing, PodFilesError> {
        let (host, rest) = match self.locate(path)? {
            (Reach::Dir { host, .. }, rest) => (host, rest),
            (Reach::File { .. }, rest) if rest.is_empty() => {
                return Err(PodFilesError::NotADirectory(path.into()))
            }
            _ => return Err(PodFilesError::NotFound(path.into())),
        };
        let dir = resolve(&host, &rest, OFlag::O_RDONLY | OFlag::O_DIRECTORY, path)?;
        let names = {
            let read = nix::dir::Dir::from_fd(dir.try_clone().map_err(io(path))?)
                .map_err(|e| io(path)(e.into()))?;
            let mut names = Vec::new();
            for entry in read {
                let entry = entry.map_err(|e| io(path)(e.into()))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name != "." && name != ".." {
                    names.push(name);
                }
            }
            names
        };
        let mut entries = Vec::with_capacity(names.len().min(MAX_LIST_ENTRIES));
        let truncated = names.len() > MAX_LIST_ENTRIES;
        let mut names = names;
        names.sort();
        names.truncate(MAX_LIST_ENTRIES);
        for name in names {
            // Not followed: a symlink is listed as one, wherever it points.
            let Ok(st) = fstatat(
                dir.as_fd(),
                name.as_str(),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            ) else {
                continue; // gone meanwhile
            };
            let kind = match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
                SFlag::S_IFREG => FileKind::File,
                SFlag::S_IFDIR => FileKind::Directory,
                SFlag::S_IFLNK => FileKind::Symlink,
                _ => FileKind::Other,
            };
            entries.push(FileEntry {
                name,
                kind,
                size: st.st_size as u64,
                mode: st.st_mode & 0o7777,
                modified: st.st_mtime,
            });
        }
        Ok(Listing { entries, truncated })
    }

    /// Starts writing the file at `path` (its directory must exist); nothing is visible in
    /// the pod until [`NewFile::commit`].
    pub fn create(&self, path: &str, mode: u32) -> Result<NewFile, PodFilesError> {
        let (dir, name, shift) = self.writable_parent(path)?;
        if let Ok(st) = fstatat(
            dir.as_fd(),
            name.as_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
                return Err(PodFilesError::IsDirectory(path.into()));
            }
        }
        let temp = format!(".berth-upload-{}-{}", std::process::id(), unique());
        let fd = nix::fcntl::openat(
            dir.as_fd(),
            temp.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| io(path)(e.into()))?;
        Ok(NewFile {
            file: Some(File::from(fd)),
            dir,
            temp,
            name,
            path: path.to_string(),
            mode: mode & 0o7777,
            owner: (self.owner.0 + shift, self.owner.1 + shift),
        })
    }

    /// Makes the directory at `path` (its parent must exist), owned by the pod's user;
    /// `false` if a directory was already there.
    pub fn make_dir(&self, path: &str, mode: u32) -> Result<bool, PodFilesError> {
        let (dir, name, shift) = self.writable_parent(path)?;
        match nix::sys::stat::mkdirat(
            dir.as_fd(),
            name.as_str(),
            Mode::from_bits_truncate(mode & 0o7777),
        ) {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                let st = fstatat(
                    dir.as_fd(),
                    name.as_str(),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| io(path)(e.into()))?;
                return if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
                    Ok(false)
                } else {
                    Err(PodFilesError::NotADirectory(path.into()))
                };
            }
            Err(e) => return Err(io(path)(e.into())),
        }
        // Opened without following anything: the name is the directory just made.
        let made = nix::fcntl::openat(
            dir.as_fd(),
            name.as_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io(path)(e.into()))?;
        fchown(
            made.as_fd(),
            Some(Uid::from_raw(self.owner.0 + shift)),
            Some(Gid::from_raw(self.owner.1 + shift)),
        )
        .map_err(|e| io(path)(e.into()))?;
        // mkdir's mode passed through the umask; the asked bits are set as given.
        nix::sys::stat::fchmod(made.as_fd(), Mode::from_bits_truncate(mode & 0o7777))
            .map_err(|e| io(path)(e.into()))?;
        Ok(true)
    }

    /// The directory that is to hold `path` (on a writable mount), the last name, and the
    /// shift of the mount's ids.
    fn writable_parent(&self, path: &str) -> Result<(OwnedFd, String, u32), PodFilesError> {
        let (host, rest, shift) = match self.locate(path)? {
            (
                Reach::Dir {
                    read_only: true, ..
                },
                _,
            )
            | (Reach::File { .. }, _) => return Err(PodFilesError::ReadOnly(path.into())),
            (Reach::Dir { host, shift, .. }, rest) => (host, rest, shift),
            (Reach::Kernel { .. }, _) => unreachable!("locate refuses kernel mounts"),
        };
        let Some((name, parent)) = rest.split_last() else {
            return Err(PodFilesError::IsDirectory(path.into()));
        };
        let dir = resolve(&host, parent, OFlag::O_RDONLY | OFlag::O_DIRECTORY, path).map_err(
            |e| match e {
                PodFilesError::NotAFile(_) | PodFilesError::IsDirectory(_) => {
                    PodFilesError::NotADirectory(path.into())
                }
                other => other,
            },
        )?;
        Ok((dir, name.clone(), shift))
    }

    /// The mount that holds `path`, and the components of `path` below its mount point.
    fn locate(&self, path: &str) -> Result<(Reach, Vec<String>), PodFilesError> {
        let parts = components(path).ok_or_else(|| PodFilesError::Invalid {
            path: path.into(),
            why: "it must be absolute, without '..' or NUL",
        })?;
        let (at, reach) = self
            .mounts
            .iter()
            .filter(|(at, _)| parts.starts_with(at))
            .max_by_key(|(at, _)| at.len())
            .expect("the root filesystem holds every path");
        if let Reach::Kernel { what } = reach {
            return Err(PodFilesError::Unreachable {
                path: path.into(),
                what: what.clone(),
            });
        }
        Ok((reach.clone(), parts[at.len()..].to_vec()))
    }
}

/// A file being written into the pod; removed unless committed.
pub struct NewFile {
    file: Option<File>,
    dir: OwnedFd,
    temp: String,
    name: String,
    path: String,
    mode: u32,
    owner: (u32, u32),
}

impl NewFile {
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("open until committed")
    }

    /// Gives the file its mode and the pod user as owner, and puts it in place.
    pub fn commit(mut self) -> Result<(), PodFilesError> {
        let file = self.file.take().expect("open until committed");
        let path = self.path.clone();
        fchown(
            file.as_fd(),
            Some(Uid::from_raw(self.owner.0)),
            Some(Gid::from_raw(self.owner.1)),
        )
        .map_err(|e| io(&path)(e.into()))?;
        file.set_permissions(std::fs::Permissions::from_mode(self.mode))
            .map_err(io(&path))?;
        drop(file);
        renameat(
            self.dir.as_fd(),
            self.temp.as_str(),
            self.dir.as_fd(),
            self.name.as_str(),
        )
        .map_err(|e| io(&path)(e.into()))?;
        self.temp.clear();
        Ok(())
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        if !self.temp.is_empty() {
            let _ = unlinkat(
                self.dir.as_fd(),
                self.temp.as_str(),
                UnlinkatFlags::NoRemoveDir,
            );
        }
    }
}

/// The components of an absolute pod path, `.` and empty ones dropped; `None` for a
/// relative path, `..` or NUL.
fn components(path: &str) -> Option<Vec<String>> {
    if !path.starts_with('/') || path.contains('\0') {
        return None;
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            other => parts.push(other.to_string()),
        }
    }
    Some(parts)
}

/// Opens `rest` below `root` with the kernel keeping every step inside `root`.
fn resolve(
    root: &Path,
    rest: &[String],
    flags: OFlag,
    path: &str,
) -> Result<OwnedFd, PodFilesError> {
    let root_fd = File::open(root).map_err(io(path))?;
    let relative = if rest.is_empty() {
        ".".to_string()
    } else {
        rest.join("/")
    };
    let how = OpenHow::new().flags(flags | OFlag::O_CLOEXEC).resolve(
        ResolveFlag::RESOLVE_IN_ROOT
            | ResolveFlag::RESOLVE_NO_MAGICLINKS
            | ResolveFlag::RESOLVE_NO_XDEV,
    );
    openat2(root_fd.as_fd(), relative.as_str(), how).map_err(|e| match e {
        Errno::ENOENT => PodFilesError::NotFound(path.into()),
        Errno::ENOTDIR => PodFilesError::NotADirectory(path.into()),
        Errno::EXDEV => PodFilesError::Unreachable {
            path: path.into(),
            what: "inner".into(),
        },
        Errno::ELOOP => PodFilesError::NotFound(path.into()),
        other => io(path)(other.into()),
    })
}

fn io(path: &str) -> impl FnOnce(std::io::Error) -> PodFilesError {
    let path = path.to_string();
    move |source| PodFilesError::Io { path, source }
}

/// A number no other upload in this process has used.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::fs::symlink;

    use super::*;

    /// A pod whose root filesystem is `root` and that binds `code` at /mnt/code read-only.
    fn pod(root: &Path, code: &Path) -> PodFiles {
        PodFiles {
            mounts: vec![
                (
                    Vec::new(),
                    Reach::Dir {
                        host: root.into(),
                        read_only: false,
                        shift: 0,
                    },
                ),
                (
                    vec!["proc".into()],
                    Reach::Kernel {
                        what: "proc".into(),
                    },
                ),
                (
                    vec!["mnt".into(), "code".into()],
                    Reach::Dir {
                        host: code.into(),
                        read_only: true,
                        shift: 0,
                    },
                ),
            ],
            owner: (
                nix::unistd::getuid().as_raw(),
                nix::unistd::getgid().as_raw(),
            ),
        }
    }

    fn read_all(files: &PodFiles, path: &str) -> Result<String, PodFilesError> {
        let mut text = String::new();
        files
            .open(path)?
            .file
            .read_to_string(&mut text)
            .expect("read");
        Ok(text)
    }

    #[test]
    fn symlinks_and_dotdot_stay_inside_the_pod() {
        let host = tempfile::tempdir().expect("tempdir");
        let root = host.path().join("rootfs");
        let code = host.path().join("code");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        std::fs::create_dir_all(&code).expect("mkdir");
        std::fs::write(host.path().join("secret"), "host secret").expect("write");
        std::fs::write(root.join("etc/secret"), "pod file").expect("write");
        // What a hostile pod plants: links to the host's paths, absolute and relative.
        let secret = host.path().join("secret");
        symlink(&secret, root.join("abs")).expect("symlink");
        symlink("../../../../../../secret", root.join("rel")).expect("symlink");
        symlink(host.path(), root.join("hostdir")).expect("symlink");
        symlink("/etc/secret", root.join("inside")).expect("symlink");
        let files = pod(&root, &code);

        assert!(matches!(
            read_all(&files, "/abs"),
            Err(PodFilesError::NotFound(_))
        ));
        assert!(matches!(
            read_all(&files, "/rel"),
            Err(PodFilesError::NotFound(_))
        ));
        assert!(matches!(
            read_all(&files, "/hostdir/secret"),
            Err(PodFilesError::NotFound(_))
        ));
        // A link that stays in the pod is followed, as the pod would.
        assert_eq!(read_all(&files, "/inside").expect("read"), "pod file");
        assert!(matches!(
            read_all(&files, "/etc/../../secret"),
            Err(PodFilesError::Invalid { .. })
        ));
        // Writing through a planted link to a host directory lands in the pod, or nowhere.
        let written = files.create("/hostdir/planted", 0o644);
        assert!(written.is_err(), "the link's target is not in the pod");
        assert!(!host.path().join("planted").exists());
        assert_eq!(
            std::fs::read_to_string(host.path().join("secret")).expect("read"),
            "host secret"
        );
    }

    #[test]
    fn writes_appear_whole_with_the_asked_mode_and_leave_nothing_when_abandoned() {
        let host = tempfile::tempdir().expect("tempdir");
        let root = host.path().join("rootfs");
        let code = host.path().join("code");
        std::fs::create_dir_all(root.join("tmp")).expect("mkdir");
        std::fs::create_dir_all(&code).expect("mkdir");
        let files = pod(&root, &code);

        let mut new = files.create("/tmp/a.txt", 0o640).expect("create");
        new.file().write_all(b"hello").expect("write");
        assert!(
            !root.join("tmp/a.txt").exists(),
            "not visible before commit"
        );
        new.commit().expect("commit");
        assert_eq!(read_all(&files, "/tmp/a.txt").expect("read"), "hello");
        assert_eq!(files.open("/tmp/a.txt").expect("open").mode, 0o640);

        let mut abandoned = files.create("/tmp/b.txt", 0o644).expect("create");
        abandoned.file().write_all(b"half").expect("write");
        drop(abandoned);
        let listing = files.list("/tmp").expect("list");
        let names: Vec<_> = listing.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a.txt"], "an abandoned upload leaves no file");

        assert!(matches!(
            files.create("/tmp", 0o644),
            Err(PodFilesError::IsDirectory(_))
        ));
        assert!(matches!(
            files.create("/nope/x", 0o644),
            Err(PodFilesError::NotFound(_))
        ));
        assert!(matches!(
            files.create("/mnt/code/x", 0o644),
            Err(PodFilesError::ReadOnly(_))
        ));
        assert!(matches!(
            files.open("/proc/self/environ"),
            Err(PodFilesError::Unreachable { .. })
        ));
        assert!(matches!(
            files.list("tmp"),
            Err(PodFilesError::Invalid { .. })
        ));
    }

    #[test]
    fn directories_are_made_in_the_pod_once() {
        let host = tempfile::tempdir().expect("tempdir");
        let root = host.path().join("rootfs");
        let code = host.path().join("code");
        std::fs::create_dir_all(root.join("tmp")).expect("mkdir");
        std::fs::create_dir_all(&code).expect("mkdir");
        symlink(host.path(), root.join("hostdir")).expect("symlink");
        std::fs::write(root.join("tmp/file"), "x").expect("write");
        let files = pod(&root, &code);

        assert!(files.make_dir("/tmp/d", 0o750).expect("mkdir"));
        assert!(
            !files.make_dir("/tmp/d", 0o750).expect("again"),
            "already there"
        );
        let made = std::fs::metadata(root.join("tmp/d")).expect("stat");
        assert!(made.is_dir());
        assert_eq!(made.permissions().mode() & 0o7777, 0o750);
        assert!(matches!(
            files.make_dir("/tmp/file", 0o755),
            Err(PodFilesError::NotADirectory(_))
        ));
        assert!(matches!(
            files.make_dir("/tmp/a/b", 0o755),
            Err(PodFilesError::NotFound(_))
        ));
        assert!(matches!(
            files.make_dir("/mnt/code/d", 0o755),
            Err(PodFilesError::ReadOnly(_))
        ));
        // Through a planted link: inside the pod (where /<host path> does not exist), never
        // on the host.
        assert!(files.make_dir("/hostdir/planted", 0o755).is_err());
        assert!(!host.path().join("planted").exists());
    }
}
