//! A Dockerfile's build context, packed for `PUT /v1/code/{digest}`: a gzip'd tar that is
//! the same bytes for the same tree (sorted, no times, no owners), with `.dockerignore`
//! honoured the way Docker reads it. A symlink that leads out of the context is refused
//! here, before the server refuses it too.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use globset::{GlobBuilder, GlobMatcher};
use sha2::{Digest, Sha256};

pub struct Packed {
    /// `sha256:<hex>` of `archive`.
    pub digest: String,
    pub archive: Vec<u8>,
    pub files: u64,
    pub bytes: u64,
}

/// One `.dockerignore` line: patterns are relative to the context root (Go's
/// `filepath.Match` plus `**`), `!` re-includes, and the last match decides.
struct Rule {
    glob: GlobMatcher,
    include: bool,
}

fn rules(text: &str) -> Result<Vec<Rule>> {
    let mut rules = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (include, pattern) = match line.strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, line),
        };
        let pattern = pattern.trim_start_matches("./").trim_start_matches('/');
        let pattern = pattern.trim_end_matches('/');
        if pattern.is_empty() {
            continue;
        }
        let glob = GlobBuilder::new(pattern)
            .literal_separator(true)
            .build()
            .with_context(|| format!(".dockerignore: {line:?} is not a valid pattern"))?
            .compile_matcher();
        rules.push(Rule { glob, include });
    }
    Ok(rules)
}

/// Whether `rel` is left out: by a rule on itself or on one of its parents, as Docker does.
fn ignored(rules: &[Rule], rel: &str) -> bool {
    let mut verdict = false;
    for rule in rules {
        let mut prefix = String::new();
        let mut matched = false;
        for part in rel.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if rule.glob.is_match(&prefix) {
                matched = true;
                break;
            }
        }
        if matched {
            verdict = !rule.include;
        }
    }
    verdict
}

/// Packs `root` (its `.dockerignore` applied).
pub fn pack(root: &Path) -> Result<Packed> {
    let meta =
        std::fs::metadata(root).with_context(|| format!("the build context {}", root.display()))?;
    if !meta.is_dir() {
        bail!("the build context {} is not a directory", root.display());
    }
    let rules = match std::fs::read_to_string(root.join(".dockerignore")) {
        Ok(text) => rules(&text)?,
        Err(_) => Vec::new(),
    };
    let mut entries = Vec::new();
    walk(root, root, "", &rules, &mut entries)?;
    entries.sort();
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    let mut tar = tar::Builder::new(gz);
    let (mut files, mut bytes) = (0u64, 0u64);
    for rel in &entries {
        let full = root.join(rel);
        let meta = std::fs::symlink_metadata(&full)
            .with_context(|| format!("reading {}", full.display()))?;
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        if meta.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(0o755);
            header.set_size(0);
            tar.append_data(&mut header, rel, std::io::empty())?;
        } else if meta.file_type().is_symlink() {
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            let target = std::fs::read_link(&full)?;
            tar.append_link(&mut header, rel, target)?;
        } else {
            use std::os::unix::fs::PermissionsExt;
            let executable = meta.permissions().mode() & 0o111 != 0;
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(if executable { 0o755 } else { 0o644 });
            header.set_size(meta.len());
            let file = std::fs::File::open(&full)
                .with_context(|| format!("reading {}", full.display()))?;
            tar.append_data(&mut header, rel, file)?;
            files += 1;
            bytes += meta.len();
        }
    }
    let mut gz = tar.into_inner()?;
    gz.flush()?;
    let archive = gz.finish()?;
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&archive)));
    Ok(Packed {
        digest,
        archive,
        files,
        bytes,
    })
}

fn walk(root: &Path, dir: &Path, rel: &str, rules: &[Rule], out: &mut Vec<String>) -> Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let Some(name) = name.to_str() else {
            bail!(
                "{}: a name that is not UTF-8 cannot go into the build context",
                dir.display()
            );
        };
        let rel = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        if ignored(rules, &rel) {
            continue;
        }
        let full = dir.join(name);
        let meta = std::fs::symlink_metadata(&full)?;
        if meta.file_type().is_symlink() {
            if !link_stays_inside(root, &full)? {
                bail!(
                    "the build context has a symlink out of it: {rel} -> {}; \
                     copy what it points to into the context instead",
                    std::fs::read_link(&full)?.display()
                );
            }
            out.push(rel);
        } else if meta.is_dir() {
            out.push(rel.clone());
            walk(root, &full, &rel, rules, out)?;
        } else if meta.is_file() {
            out.push(rel);
        }
        // Sockets, FIFOs and devices are not content.
    }
    Ok(())
}

/// A relative link whose target, resolved through any further links, is inside `root`.
fn link_stays_inside(root: &Path, link: &Path) -> Result<bool> {
    let target = std::fs::read_link(link)?;
    if target.is_absolute() {
        return Ok(false);
    }
    let (Ok(real_root), Ok(real)) = (root.canonicalize(), link.canonicalize()) else {
        // A dangling link leads nowhere: harmless, but nothing to copy either.
        return Ok(false);
    };
    Ok(real.starts_with(real_root))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(root: &Path) -> Vec<String> {
        let packed = pack(root).expect("packs");
        let gz = flate2::read::GzDecoder::new(packed.archive.as_slice());
        let mut tar = tar::Archive::new(gz);
        tar.entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .display()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn dockerignore_is_anchored_at_the_root_with_exceptions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for path in [
            "app/main.py",
            "app/cache/x",
            "node_modules/a",
            "sub/node_modules/b",
            "notes.md",
            "README.md",
        ] {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, "x").expect("write");
        }
        std::fs::write(
            root.join(".dockerignore"),
            "# comment\nnode_modules\n**/cache\n*.md\n!README.md\n",
        )
        .expect("ignore");
        let names = listed(root);
        assert!(names.contains(&"app/main.py".to_string()), "{names:?}");
        assert!(
            names.contains(&"sub/node_modules/b".to_string()),
            "only the root's: {names:?}"
        );
        assert!(names.contains(&"README.md".to_string()), "{names:?}");
        for gone in ["node_modules/a", "app/cache/x", "notes.md"] {
            assert!(!names.contains(&gone.to_string()), "{gone} in {names:?}");
        }
    }

    #[test]
    fn the_same_tree_packs_to_the_same_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a"), "1").expect("write");
        let first = pack(dir.path()).expect("packs").digest;
        assert_eq!(first, pack(dir.path()).expect("packs").digest);
        std::fs::write(dir.path().join("a"), "2").expect("write");
        assert_ne!(first, pack(dir.path()).expect("packs").digest);
    }

    #[test]
    fn a_symlink_out_is_refused_and_one_inside_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("real"), "x").expect("write");
        std::os::unix::fs::symlink("real", dir.path().join("inside")).expect("link");
        assert!(listed(dir.path()).contains(&"inside".to_string()));
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("out")).expect("link");
        let err = pack(dir.path()).err().expect("refused").to_string();
        assert!(
            err.contains("symlink out of it: out -> /etc/passwd"),
            "{err}"
        );
    }
}
