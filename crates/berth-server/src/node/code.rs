//! Uploaded working directories: gzip'd tarballs, content-addressed by the sha256 of the
//! upload, unpacked once into `<dir>/<hex>` and bind-mounted read-only at `/mnt/code`.
//!
//! The archive is hostile until proven otherwise: only files, directories and symlinks that
//! stay inside are accepted; nothing is written through a symlink; the unpacked size is
//! counted as it is read (a gzip bomb stops at the cap); and a half-unpacked tree never
//! becomes visible under its digest.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use berth_api::CodeUploaded;
use rand::Rng;
use sha2::{Digest, Sha256};

/// More entries than any working directory needs; past it the archive is refused.
const MAX_ENTRIES: u64 = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error("the upload's sha256 is {actual}, not the {expected} named in the URL")]
    DigestMismatch { expected: String, actual: String },
    #[error("the archive unpacks to more than {limit_mib} MiB (the server's --max-code-mib)")]
    TooLarge { limit_mib: u64 },
    #[error("the archive holds more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    #[error("archive entry {path:?}: {problem}")]
    Hostile { path: String, problem: String },
    #[error("the archive is not a readable gzip'd tar: {0}")]
    Unreadable(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl CodeError {
    /// Whether the client is at fault (400/413) rather than the node.
    pub fn is_client_error(&self) -> bool {
        !matches!(self, CodeError::Io { .. })
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CodeError + '_ {
    move |source| CodeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub struct CodeStore {
    dir: PathBuf,
    max_bytes: u64,
}

impl CodeStore {
    pub fn new(dir: PathBuf, max_bytes: u64) -> Result<Self, CodeError> {
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        // Unpacks cut off by a crash.
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(".tmp-") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        Ok(CodeStore { dir, max_bytes })
    }

    /// The unpacked tree of `digest` (`sha256:<hex>`), if it was uploaded.
    pub fn path(&self, digest: &str) -> Option<PathBuf> {
        let hex = digest.strip_prefix("sha256:")?;
        let path = self.dir.join(hex);
        path.is_dir().then_some(path)
    }

    /// Checks the upload against its digest and unpacks it. Blocking.
    pub fn put(&self, digest: &str, archive: &[u8]) -> Result<CodeUploaded, CodeError> {
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(archive)));
        if actual != digest {
            return Err(CodeError::DigestMismatch {
                expected: digest.to_string(),
                actual,
            });
        }
        let hex = &digest["sha256:".len()..];
        let tmp = self
            .dir
            .join(format!(".tmp-{:08x}", rand::rng().random::<u32>()));
        std::fs::create_dir(&tmp).map_err(io(&tmp))?;
        let unpacked = unpack(archive, &tmp, self.max_bytes);
        let result = unpacked.and_then(|(files, bytes)| {
            let target = self.dir.join(hex);
            match std::fs::rename(&tmp, &target) {
                Ok(()) => Ok((files, bytes)),
                // The same upload raced us and won: its tree is the same.
                Err(_) if target.is_dir() => Ok((files, bytes)),
                Err(e) => Err(io(&target)(e)),
            }
        });
        let _ = std::fs::remove_dir_all(&tmp);
        let (files, bytes) = result?;
        Ok(CodeUploaded {
            digest: digest.to_string(),
            files,
            bytes,
        })
    }
}

/// Unpacks into `root` (an empty directory); returns (files, bytes).
fn unpack(archive: &[u8], root: &Path, max_bytes: u64) -> Result<(u64, u64), CodeError> {
    let unreadable = |e: std::io::Error| CodeError::Unreadable(e.to_string());
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let (mut files, mut bytes, mut entries) = (0u64, 0u64, 0u64);
    for entry in tar.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        entries += 1;
        if entries > MAX_ENTRIES {
            return Err(CodeError::TooManyEntries);
        }
        let raw = entry.path().map_err(unreadable)?.into_owned();
        let shown = raw.display().to_string();
        let hostile = |problem: &str| CodeError::Hostile {
            path: shown.clone(),
            problem: problem.to_string(),
        };
        let rel = relative_path(&raw).ok_or_else(|| {
            hostile("is absolute or climbs out with '..'; paths must stay inside the directory")
        })?;
        if rel.as_os_str().is_empty() {
            continue; // "./" itself
        }
        let dest = root.join(&rel);
        ensure_real_parents(root, &rel).map_err(|p| hostile(&p))?;
        let mode = entry.header().mode().unwrap_or(0o644);
        match entry.header().entry_type() {
            tar::EntryType::Directory => match std::fs::symlink_metadata(&dest) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(hostile("is listed twice")),
                Err(_) => std::fs::create_dir(&dest).map_err(io(&dest))?,
            },
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut out = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    // No setuid, setgid or sticky bits; nobody else may write.
                    .mode(if mode & 0o111 != 0 { 0o755 } else { 0o644 })
                    .open(&dest)
                    .map_err(|e| match e.kind() {
                        std::io::ErrorKind::AlreadyExists => hostile("is listed twice"),
                        _ => io(&dest)(e),
                    })?;
                let room = max_bytes.saturating_sub(bytes);
                // Read one byte past the room, so an entry that crosses the cap is seen.
                let copied = std::io::copy(&mut (&mut entry).take(room + 1), &mut out)
                    .map_err(unreadable)?;
                bytes += copied;
                if bytes > max_bytes {
                    return Err(CodeError::TooLarge {
                        limit_mib: max_bytes / (1024 * 1024),
                    });
                }
                files += 1;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(unreadable)?
                    .ok_or_else(|| hostile("is a symlink without a target"))?
                    .into_owned();
                let parent = rel.parent().unwrap_or(Path::new(""));
                if target.is_absolute() || relative_path(&parent.join(&target)).is_none() {
                    return Err(hostile(&format!(
                        "is a symlink to {}, outside the directory",
                        target.display()
                    )));
                }
                std::os::unix::fs::symlink(&target, &dest).map_err(|e| match e.kind() {
                    std::io::ErrorKind::AlreadyExists => hostile("is listed twice"),
                    _ => io(&dest)(e),
                })?;
            }
            other => {
                return Err(hostile(&format!(
                    "is a {}; only files, directories and symlinks are accepted",
                    kind_name(other)
                )))
            }
        }
    }
    Ok((files, bytes))
}

/// The path with `.` dropped, or `None` if it is absolute or `..` leaves the root.
fn relative_path(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Creates the entry's parent directories; each must be a real directory, never a symlink,
/// so no write lands outside `root`.
fn ensure_real_parents(root: &Path, rel: &Path) -> Result<(), String> {
    let mut at = root.to_path_buf();
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    for c in parent.components() {
        at.push(c);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err("lies under a symlink or a file".into()),
            Err(_) => std::fs::create_dir(&at).map_err(|e| e.to_string())?,
        }
    }
    Ok(())
}

fn kind_name(kind: tar::EntryType) -> &'static str {
    match kind {
        tar::EntryType::Link => "hard link",
        tar::EntryType::Char => "character device",
        tar::EntryType::Block => "block device",
        tar::EntryType::Fifo => "fifo",
        _ => "special entry",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Entry<'a> {
        path: &'a str,
        kind: tar::EntryType,
        data: &'a [u8],
        link: Option<&'a str>,
    }

    fn file<'a>(path: &'a str, data: &'a [u8]) -> Entry<'a> {
        Entry {
            path,
            kind: tar::EntryType::Regular,
            data,
            link: None,
        }
    }

    /// A gzip'd tar written header by header, so hostile names get in unchanged.
    fn archive(entries: &[Entry<'_>]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        for e in entries {
            let mut h = tar::Header::new_gnu();
            let name = e.path.as_bytes();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.set_entry_type(e.kind);
            h.set_size(e.data.len() as u64);
            h.set_mode(0o644);
            if let Some(link) = e.link {
                h.set_link_name(link).expect("link");
            }
            h.set_cksum();
            b.append(&h, e.data).expect("append");
        }
        b.into_inner().expect("tar").finish().expect("gz")
    }

    fn put(
        entries: &[Entry<'_>],
        max: u64,
    ) -> (tempfile::TempDir, Result<CodeUploaded, CodeError>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CodeStore::new(dir.path().join("code"), max).expect("store");
        let bytes = archive(entries);
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        let result = store.put(&digest, &bytes);
        (dir, result)
    }

    #[test]
    fn a_plain_tree_unpacks_under_its_digest() {
        let (dir, result) = put(
            &[
                file("app.py", b"print(1)\n"),
                file("sub/data.txt", b"hello"),
                Entry {
                    path: "link",
                    kind: tar::EntryType::Symlink,
                    data: b"",
                    link: Some("sub/data.txt"),
                },
            ],
            1 << 20,
        );
        let up = result.expect("unpacks");
        assert_eq!((up.files, up.bytes), (2, 14));
        let root = dir.path().join("code").join(&up.digest["sha256:".len()..]);
        assert_eq!(
            std::fs::read_to_string(root.join("link")).expect("through the link"),
            "hello"
        );
        // Nothing half-made is left beside it.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("code"))
            .expect("dir")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn hostile_entries_are_refused_and_leave_nothing() {
        let link = |path, to| Entry {
            path,
            kind: tar::EntryType::Symlink,
            data: b"",
            link: Some(to),
        };
        let cases: Vec<(Vec<Entry<'_>>, &str)> = vec![
            (vec![file("../evil", b"x")], "climbs out"),
            (vec![file("/etc/evil", b"x")], "absolute"),
            (vec![file("a/../../evil", b"x")], "climbs out"),
            (vec![link("l", "/etc")], "outside"),
            (vec![link("l", "../..")], "outside"),
            (vec![link("d", "."), file("d/x", b"1")], "under a symlink"),
            (
                vec![Entry {
                    path: "dev",
                    kind: tar::EntryType::Char,
                    data: b"",
                    link: None,
                }],
                "character device",
            ),
            (
                vec![
                    file("a", b"1"),
                    Entry {
                        path: "b",
                        kind: tar::EntryType::Link,
                        data: b"",
                        link: Some("a"),
                    },
                ],
                "hard link",
            ),
            (vec![file("a", b"1"), file("a", b"2")], "listed twice"),
        ];
        for (entries, expected) in cases {
            let (dir, result) = put(&entries, 1 << 20);
            let err = result.expect_err("refused").to_string();
            assert!(err.contains(expected), "{err} (expected {expected:?})");
            let left = std::fs::read_dir(dir.path().join("code"))
                .expect("dir")
                .count();
            assert_eq!(left, 0, "{err}: something was left behind");
        }
    }

    #[test]
    fn a_size_bomb_stops_at_the_cap() {
        let big = vec![0u8; 3 << 20];
        let (_dir, result) = put(&[file("zeros", &big)], 1 << 20);
        assert!(matches!(result, Err(CodeError::TooLarge { limit_mib: 1 })));
    }

    #[test]
    fn the_digest_must_match_the_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = CodeStore::new(dir.path().join("code"), 1 << 20).expect("store");
        let bytes = archive(&[file("a", b"1")]);
        let wrong = format!("sha256:{}", "0".repeat(64));
        assert!(matches!(
            store.put(&wrong, &bytes),
            Err(CodeError::DigestMismatch { .. })
        ));
        assert!(store.path(&wrong).is_none());
    }
}
