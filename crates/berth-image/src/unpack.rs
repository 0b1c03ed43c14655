//! Unpacks one image layer into its own directory, treating the tarball as hostile.
//!
//! A layer may not write outside its directory: entries with `..` are refused, absolute
//! paths are taken relative to the layer root (as Docker does), nothing is written through a
//! symlink, hard links must point inside the layer, device nodes are skipped and extended
//! attributes are ignored (a layer must not forge overlayfs metadata). OCI whiteouts become
//! overlayfs whiteouts (0:0 character devices) and opaque markers become the
//! `trusted.overlay.opaque` attribute, so the directory can serve directly as a lower layer.

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("entry {entry:?} escapes the layer with '..'")]
    PathEscape { entry: String },
    #[error("entry {entry:?} would be written through the symlink {symlink:?}")]
    ThroughSymlink { entry: String, symlink: String },
    #[error("hard link {entry:?} points outside the layer or to a missing file ({target:?})")]
    BadHardLink { entry: String, target: String },
    #[error("entry {entry:?}: {source}")]
    Entry {
        entry: String,
        #[source]
        source: io::Error,
    },
    #[error("reading the layer archive: {0}")]
    Archive(#[source] io::Error),
}

/// How a layer blob is compressed, told by its first bytes rather than a media type that
/// registries do not always get right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    fn sniff(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Unpacks the layer tarball at `blob` into `dest`, which must not exist yet.
///
/// The layer is written to a sibling temporary directory and renamed into place only when
/// complete, so a failed or interrupted unpack never leaves a half-written layer behind.
pub fn unpack_layer(blob: &Path, dest: &Path) -> Result<Compression, UnpackError> {
    let file = fs::File::open(blob).map_err(UnpackError::Archive)?;
    let (pending, compression) = PendingLayer::unpack(file, dest)?;
    pending.commit()?;
    Ok(compression)
}

/// A layer unpacked into a temporary directory beside its destination, not yet in place:
/// a pull unpacks while the blob downloads and commits only once its digest checked out.
/// Dropped uncommitted, it removes what it wrote.
#[derive(Debug)]
pub struct PendingLayer {
    tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl PendingLayer {
    /// Unpacks the (possibly compressed) layer tarball read from `stream` for `dest`.
    pub fn unpack(stream: impl Read, dest: &Path) -> Result<(Self, Compression), UnpackError> {
        let tmp = dest.with_extension(format!("tmp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        let pending = PendingLayer {
            tmp,
            dest: dest.to_path_buf(),
            committed: false,
        };
        fs::create_dir_all(&pending.tmp).map_err(UnpackError::Archive)?;
        fs::set_permissions(&pending.tmp, fs::Permissions::from_mode(0o755))
            .map_err(UnpackError::Archive)?;
        let mut reader = BufReader::with_capacity(1 << 20, stream);
        let compression = Compression::sniff(reader.fill_buf().map_err(UnpackError::Archive)?);
        let stream: Box<dyn Read> = match compression {
            Compression::None => Box::new(reader),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(reader).map_err(UnpackError::Archive)?,
            ),
        };
        unpack_tar(stream, &pending.tmp)?;
        Ok((pending, compression))
    }

    /// Moves the layer into place.
    pub fn commit(mut self) -> Result<(), UnpackError> {
        fs::rename(&self.tmp, &self.dest).map_err(UnpackError::Archive)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for PendingLayer {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

fn unpack_tar(stream: impl Read, root: &Path) -> Result<(), UnpackError> {
    let mut archive = tar::Archive::new(stream);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    for entry in archive.entries().map_err(UnpackError::Archive)? {
        let mut entry = entry.map_err(UnpackError::Archive)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(rel) = sanitize(&raw)? else { continue };
        let target = root.join(&rel);
        ensure_parents(root, &rel, &raw)?;
        let entry_err = |source| UnpackError::Entry {
            entry: raw.clone(),
            source,
        };

        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name == OPAQUE_MARKER {
            let dir = target.parent().unwrap_or(root);
            xattr::set(dir, "trusted.overlay.opaque", b"y").map_err(entry_err)?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            // `.wh..` would name the parent directory: a whiteout hides one entry, no more.
            if hidden.is_empty() || hidden == "." || hidden == ".." || hidden.contains('/') {
                return Err(UnpackError::PathEscape { entry: raw.clone() });
            }
            let path = target.with_file_name(hidden);
            remove_existing(&path, false).map_err(entry_err)?;
            make_whiteout(&path).map_err(entry_err)?;
            continue;
        }

        let kind = entry.header().entry_type();
        match kind {
            EntryType::Char | EntryType::Block => {
                // A pod gets no host devices, and a layer cannot add one.
                tracing::info!(entry = %raw, "skipping a device node in an image layer");
                continue;
            }
            EntryType::Fifo => {
                // The tar crate would write a regular file: a named pipe must stay one.
                remove_existing(&target, false).map_err(entry_err)?;
                make_fifo(&target, entry.header()).map_err(entry_err)?;
                continue;
            }
            EntryType::Regular | EntryType::Continuous => {
                remove_existing(&target, false).map_err(entry_err)?;
                write_file(&mut entry, &target).map_err(entry_err)?;
                continue;
            }
            EntryType::Link => {
                let link = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let bad = || UnpackError::BadHardLink {
                    entry: raw.clone(),
                    target: link.clone(),
                };
                let link_rel = sanitize(&link)?.ok_or_else(bad)?;
                ensure_parents(root, &link_rel, &raw)?;
                let source = root.join(&link_rel);
                if fs::symlink_metadata(&source).is_err() {
                    return Err(bad());
                }
                remove_existing(&target, false).map_err(entry_err)?;
                fs::hard_link(&source, &target).map_err(entry_err)?;
                continue;
            }
            _ => {}
        }
        remove_existing(&target, kind == EntryType::Directory).map_err(entry_err)?;
        entry.unpack(&target).map_err(entry_err)?;
    }
    Ok(())
}

/// Large writes of whole pages: the tar crate's unpack writes a file 8 KiB at a time in the
/// pieces the decompressor hands out, which made the kernel zero and copy each page twice.
const FILE_WRITE_CHUNK: usize = 1 << 20;

/// A regular file from `entry` at `path` (which must not exist), with the entry's mode
/// (setuid and setgid included, as `preserve_permissions` does), owner and mtime.
fn write_file(entry: &mut tar::Entry<'_, impl Read>, path: &Path) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let header = entry.header();
    let mode = header.mode().unwrap_or(0o644) & 0o7777;
    let uid = header.uid().ok().and_then(|u| u32::try_from(u).ok());
    let gid = header.gid().ok().and_then(|g| u32::try_from(g).ok());
    let mtime = header.mtime().ok();
    let expected = entry.size();
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let mut buf = vec![0u8; FILE_WRITE_CHUNK.min(expected as usize).max(1)];
    let mut written = 0u64;
    loop {
        let filled = fill(entry, &mut buf)?;
        if filled == 0 {
            break;
        }
        io::Write::write_all(&mut file, &buf[..filled])?;
        written += filled as u64;
    }
    if written != expected {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "the archive ended {} bytes into a {expected}-byte file",
                written
            ),
        ));
    }
    if let Some(mtime) = mtime {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
        file.set_times(fs::FileTimes::new().set_modified(at).set_accessed(at))?;
    }
    // Owner first: a chown clears the setuid and setgid bits the chmod then sets.
    std::os::unix::fs::fchown(&file, uid, gid)?;
    file.set_permissions(fs::Permissions::from_mode(mode))
}

/// Reads into `buf` until it is full or the stream ends; the bytes read.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A named pipe at `path` with the entry's permission bits and owner (no setuid/setgid).
fn make_fifo(path: &Path, header: &tar::Header) -> std::io::Result<()> {
    let mode = header.mode().unwrap_or(0o644) & 0o777;
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(mode))
        .map_err(std::io::Error::from)?;
    // mkfifo applies the umask; the layer's bits are what the image asked for.
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    let uid = header.uid().ok().and_then(|u| u32::try_from(u).ok());
    let gid = header.gid().ok().and_then(|g| u32::try_from(g).ok());
    std::os::unix::fs::lchown(path, uid, gid)
}

/// The entry path relative to the layer root; `None` for the root itself.
fn sanitize(raw: &str) -> Result<Option<PathBuf>, UnpackError> {
    let mut rel = PathBuf::new();
    for component in Path::new(raw).components() {
        match component {
            Component::Normal(part) => rel.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(UnpackError::PathEscape {
                    entry: raw.to_string(),
                })
            }
        }
    }
    Ok((!rel.as_os_str().is_empty()).then_some(rel))
}

/// Creates missing parent directories of `rel` and refuses any parent that is a symlink, so
/// no later write can be redirected outside the layer.
fn ensure_parents(root: &Path, rel: &Path, raw: &str) -> Result<(), UnpackError> {
    let mut current = root.to_path_buf();
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    for part in parent.components() {
        current.push(part);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(UnpackError::ThroughSymlink {
                    entry: raw.to_string(),
                    symlink: current
                        .strip_prefix(root)
                        .unwrap_or(&current)
                        .display()
                        .to_string(),
                })
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                fs::remove_file(&current).map_err(|source| UnpackError::Entry {
                    entry: raw.to_string(),
                    source,
                })?;
                make_dir(&current, raw)?;
            }
            Err(_) => make_dir(&current, raw)?,
        }
    }
    Ok(())
}

fn make_dir(path: &Path, raw: &str) -> Result<(), UnpackError> {
    fs::create_dir(path)
        .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(0o755)))
        .map_err(|source| UnpackError::Entry {
            entry: raw.to_string(),
            source,
        })
}

/// Clears the way for a new entry: a later entry replaces an earlier one, except that a
/// directory entry over an existing directory merges into it.
fn remove_existing(path: &Path, keep_dir: bool) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() && keep_dir => Ok(()),
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn make_whiteout(path: &Path) -> io::Result<()> {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    mknod(path, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> tempfile::NamedTempFile {
        let mut builder = tar::Builder::new(Vec::new());
        build(&mut builder);
        let data = builder.into_inner().expect("tar finishes");
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        std::io::Write::write_all(&mut file, &data).expect("write layer");
        file
    }

    fn raw_header(name: &[u8], kind: EntryType, size: u64) -> tar::Header {
        let mut h = header(kind, size);
        h.as_gnu_mut().expect("gnu header").name[..name.len()].copy_from_slice(name);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h
    }

    fn file_header(size: u64) -> tar::Header {
        header(EntryType::Regular, size)
    }

    fn header(kind: EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1);
        h
    }

    #[test]
    fn regular_layer_unpacks_with_modes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blob = layer(|b| {
            let mut h = file_header(5);
            h.set_mode(0o755);
            h.set_mtime(1_000_000);
            b.append_data(&mut h, "usr/bin/app", &b"hello"[..])
                .expect("append");
            let big: Vec<u8> = (0..3 * FILE_WRITE_CHUNK + 17).map(|i| i as u8).collect();
            let mut h = file_header(big.len() as u64);
            h.set_mode(0o4711);
            b.append_data(&mut h, "usr/bin/big", &big[..])
                .expect("append");
            let mut l = header(EntryType::Symlink, 0);
            b.append_link(&mut l, "bin", "usr/bin").expect("link");
        });
        let dest = dir.path().join("layer");
        unpack_layer(blob.path(), &dest).expect("unpacks");
        assert_eq!(fs::read(dest.join("usr/bin/app")).expect("read"), b"hello");
        let mode = fs::metadata(dest.join("usr/bin/app"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        let modified = fs::metadata(dest.join("usr/bin/app"))
            .expect("meta")
            .modified();
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        assert_eq!(modified.expect("mtime"), at);
        let big = fs::read(dest.join("usr/bin/big")).expect("read");
        assert_eq!(big.len(), 3 * FILE_WRITE_CHUNK + 17);
        assert!(big.iter().enumerate().all(|(i, &b)| b == i as u8));
        let mode = fs::metadata(dest.join("usr/bin/big"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o4711, "setuid is kept");
        assert!(fs::symlink_metadata(dest.join("bin"))
            .expect("meta")
            .file_type()
            .is_symlink());
    }

    #[test]
    fn a_pending_layer_is_in_place_only_once_committed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blob = layer(|b| {
            b.append_data(&mut file_header(2), "f", &b"hi"[..])
                .expect("append");
        });
        let dest = dir.path().join("layer");
        let entries = || fs::read_dir(dir.path()).expect("list").count();
        let (pending, _) = PendingLayer::unpack(fs::File::open(blob.path()).expect("open"), &dest)
            .expect("unpacks");
        assert!(!dest.exists(), "not in place before the commit");
        drop(pending);
        assert_eq!(entries(), 0, "an uncommitted layer leaves nothing behind");
        let (pending, _) = PendingLayer::unpack(fs::File::open(blob.path()).expect("open"), &dest)
            .expect("unpacks");
        pending.commit().expect("commits");
        assert_eq!(fs::read(dest.join("f")).expect("read"), b"hi");
        assert_eq!(entries(), 1);
    }

    #[test]
    fn dotdot_entry_is_refused_and_nothing_escapes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blob = layer(|b| {
            let h = raw_header(b"../../escaped", EntryType::Regular, 4);
            b.append(&h, &b"evil"[..]).expect("append");
        });
        let dest = dir.path().join("a/b/layer");
        fs::create_dir_all(dir.path().join("a/b")).expect("mkdir");
        let err = unpack_layer(blob.path(), &dest).expect_err("must be refused");
        assert!(matches!(err, UnpackError::PathEscape { .. }), "{err}");
        assert!(!dir.path().join("escaped").exists());
        assert!(!dest.exists(), "no half-written layer is left");
    }

    #[test]
    fn write_through_symlink_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).expect("mkdir");
        let blob = layer(|b| {
            let mut l = header(EntryType::Symlink, 0);
            b.append_link(&mut l, "etc2", &outside).expect("link");
            let mut h = file_header(4);
            b.append_data(&mut h, "etc2/pwned", &b"evil"[..])
                .expect("append");
        });
        let dest = dir.path().join("layer");
        let err = unpack_layer(blob.path(), &dest).expect_err("must be refused");
        assert!(matches!(err, UnpackError::ThroughSymlink { .. }), "{err}");
        assert!(!outside.join("pwned").exists());
    }

    #[test]
    fn file_replacing_symlink_does_not_follow_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        fs::write(&victim, "safe").expect("write");
        let blob = layer(|b| {
            let mut l = header(EntryType::Symlink, 0);
            b.append_link(&mut l, "x", &victim).expect("link");
            let mut h = file_header(4);
            b.append_data(&mut h, "x", &b"evil"[..]).expect("append");
        });
        let dest = dir.path().join("layer");
        unpack_layer(blob.path(), &dest).expect("unpacks");
        assert_eq!(fs::read_to_string(&victim).expect("read"), "safe");
        assert_eq!(fs::read_to_string(dest.join("x")).expect("read"), "evil");
    }

    #[test]
    fn hard_link_outside_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blob = layer(|b| {
            let mut raw = raw_header(b"passwd", EntryType::Link, 0);
            raw.as_gnu_mut().expect("gnu").linkname[..19].copy_from_slice(b"../../../etc/passwd");
            raw.set_cksum();
            b.append(&raw, &b""[..]).expect("append");
        });
        let err = unpack_layer(blob.path(), &dir.path().join("layer")).expect_err("refused");
        assert!(matches!(err, UnpackError::PathEscape { .. }), "{err}");
    }

    #[test]
    fn devices_are_skipped_and_absolute_paths_stay_inside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blob = layer(|b| {
            let h = raw_header(b"dev/sda", EntryType::Block, 0);
            b.append(&h, &b""[..]).expect("append");
            let h = raw_header(b"/abs-file", EntryType::Regular, 2);
            b.append(&h, &b"ok"[..]).expect("append");
        });
        let dest = dir.path().join("layer");
        unpack_layer(blob.path(), &dest).expect("unpacks");
        assert!(!dest.join("dev/sda").exists());
        assert_eq!(
            fs::read_to_string(dest.join("abs-file")).expect("read"),
            "ok"
        );
    }

    #[test]
    fn a_fifo_stays_a_fifo_with_its_mode_and_owner() {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let dir = tempfile::tempdir().expect("tempdir");
        let blob = layer(|b| {
            let mut h = raw_header(b"run/pipe", EntryType::Fifo, 0);
            h.set_mode(0o4620);
            h.set_uid(1000);
            h.set_gid(1001);
            h.set_cksum();
            b.append(&h, &b""[..]).expect("append");
        });
        let dest = dir.path().join("layer");
        unpack_layer(blob.path(), &dest).expect("unpacks");
        let meta = fs::symlink_metadata(dest.join("run/pipe")).expect("exists");
        assert!(meta.file_type().is_fifo(), "{:?}", meta.file_type());
        assert_eq!(meta.mode() & 0o7777, 0o620, "no setuid, the layer's bits");
        assert_eq!((meta.uid(), meta.gid()), (1000, 1001));
    }

    #[test]
    fn whiteouts_become_overlay_markers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blob = layer(|b| {
            let mut h = file_header(0);
            b.append_data(&mut h, "etc/.wh.removed", &b""[..])
                .expect("append");
            let mut h = file_header(0);
            b.append_data(&mut h, "opt/.wh..wh..opq", &b""[..])
                .expect("append");
        });
        let dest = dir.path().join("layer");
        unpack_layer(blob.path(), &dest).expect("unpacks");
        use std::os::unix::fs::FileTypeExt;
        let meta = fs::symlink_metadata(dest.join("etc/removed")).expect("whiteout exists");
        assert!(meta.file_type().is_char_device());
        assert_eq!(
            xattr::get(dest.join("opt"), "trusted.overlay.opaque").expect("xattr"),
            Some(b"y".to_vec())
        );
    }

    #[test]
    fn whiteouts_of_dot_or_dotdot_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keep = dir.path().join("keep");
        fs::create_dir(&keep).expect("mkdir");
        for name in [".wh..", ".wh...", "sub/.wh.."] {
            let blob = layer(|b| {
                let mut h = file_header(0);
                b.append_data(&mut h, name, &b""[..]).expect("append");
            });
            let dest = dir.path().join("layer");
            let err = unpack_layer(blob.path(), &dest).expect_err("refused");
            assert!(
                matches!(err, UnpackError::PathEscape { .. }),
                "{name}: {err}"
            );
            assert!(keep.is_dir(), "{name} removed a sibling of the layer");
        }
    }

    #[test]
    fn gzip_and_zstd_are_detected() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"usr/"), Compression::None);
    }
}
