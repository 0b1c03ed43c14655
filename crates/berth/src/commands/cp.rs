//! `berth container cp SRC DST`: a file or a directory into or out of a running pod, docker's
//! form. A directory goes entry by entry over the file API: directories made, regular files
//! copied with their permission bits, symlinks and special files skipped with a note (never
//! followed, on either side).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;

use crate::cli::CpArgs;
use crate::client::Client;

/// One side of a copy.
#[derive(Debug, PartialEq, Eq)]
enum Place {
    Local(String),
    Pod { id: String, path: String },
}

impl Place {
    /// `<id>:<path>` is in a pod; a path starting with `/` or `.` (or without `:`) is local.
    fn parse(text: &str) -> Place {
        if text.starts_with('/') || text.starts_with('.') || text == "-" {
            return Place::Local(text.to_string());
        }
        match text.split_once(':') {
            Some((id, path)) if !id.is_empty() && !id.contains('/') => Place::Pod {
                id: id.to_string(),
                path: path.to_string(),
            },
            _ => Place::Local(text.to_string()),
        }
    }
}

pub async fn cp(args: CpArgs) -> Result<()> {
    match (Place::parse(&args.src), Place::parse(&args.dst)) {
        (Place::Local(src), Place::Pod { id, path }) => upload(&src, &id, &path).await,
        (Place::Pod { id, path }, Place::Local(dst)) => download(&id, &path, &dst).await,
        _ => bail!(
            "one of SRC and DST must be <container-id>:<path> and the other a local path \
             (e.g. berth container cp ./data.csv pod-1234:/tmp/)"
        ),
    }
}

/// What a directory copy did.
#[derive(Default)]
struct Tally {
    files: u64,
    dirs: u64,
    bytes: u64,
}

impl Tally {
    fn report(&self, to: &str) {
        println!(
            "Copied {} files in {} directories ({} bytes) to {to}",
            self.files, self.dirs, self.bytes
        );
    }
}

async fn upload(src: &str, id: &str, path: &str) -> Result<()> {
    let meta = std::fs::metadata(src).with_context(|| format!("cannot read {src}"))?;
    let client = Client::from_env()?;
    if meta.is_dir() {
        // Into an existing directory under the source's name, else as the path itself.
        let target = match client.list_files(id, path).await {
            Ok(_) => keep_name(&format!("{}/", path.trim_end_matches('/')), Path::new(src)),
            Err(_) => path.trim_end_matches('/').to_string(),
        };
        if target.is_empty() {
            bail!("name a directory in the pod to copy {src} into, like {id}:/tmp/");
        }
        let mut tally = Tally::default();
        upload_dir(&client, id, Path::new(src), &target, &mut tally).await?;
        tally.report(&format!("{id}:{target}"));
        return Ok(());
    }
    let target = keep_name(path, Path::new(src));
    let written = upload_file(&client, id, Path::new(src), &target).await?;
    println!("Copied {written} bytes to {id}:{target}");
    Ok(())
}

async fn upload_file(client: &Client, id: &str, src: &Path, target: &str) -> Result<u64> {
    let file = tokio::fs::File::open(src)
        .await
        .with_context(|| format!("cannot open {}", src.display()))?;
    let mode = file.metadata().await?.permissions().mode() & 0o7777;
    let written = client
        .upload(id, target, mode, reqwest::Body::from(file))
        .await
        .with_context(|| format!("copying {} to {id}:{target}", src.display()))?;
    Ok(written.size)
}

/// Copies the tree at `src` to `target` in the pod, depth first.
async fn upload_dir(
    client: &Client,
    id: &str,
    src: &Path,
    target: &str,
    tally: &mut Tally,
) -> Result<()> {
    let mut pending = vec![(src.to_path_buf(), target.to_string())];
    while let Some((dir, target)) = pending.pop() {
        let mode = std::fs::metadata(&dir)?.permissions().mode() & 0o7777;
        client
            .make_dir(id, &target, mode)
            .await
            .with_context(|| format!("making {id}:{target}"))?;
        tally.dirs += 1;
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let local = entry.path();
            let remote = format!("{target}/{}", entry.file_name().to_string_lossy());
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push((local, remote));
            } else if kind.is_file() {
                tally.bytes += upload_file(client, id, &local, &remote).await?;
                tally.files += 1;
            } else {
                eprintln!(
                    "note: skipped {} (not a regular file or directory)",
                    local.display()
                );
            }
        }
    }
    Ok(())
}

async fn download(id: &str, path: &str, dst: &str) -> Result<()> {
    let client = Client::from_env()?;
    if let Ok(listing) = client.list_files(id, path).await {
        if dst == "-" {
            bail!("{id}:{path} is a directory; copy it to a local path, not to stdout");
        }
        return download_dir(&client, id, path, listing, dst).await;
    }
    let resp = client.download(id, path).await?;
    let mode = mode_of(&resp);
    let mut body = resp.bytes_stream();
    if dst == "-" {
        let mut out = std::io::stdout().lock();
        while let Some(chunk) = body.next().await {
            out.write_all(&chunk.context("receiving the file")?)?;
        }
        return Ok(out.flush()?);
    }
    let target = local_target(dst, path);
    let dir = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Written beside the target and renamed when complete: a broken transfer leaves nothing.
    let mut temp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("receiving the file")?;
        size += chunk.len() as u64;
        temp.write_all(&chunk)?;
    }
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    temp.persist(&target)
        .with_context(|| format!("cannot write {}", target.display()))?;
    println!("Copied {size} bytes to {}", target.display());
    Ok(())
}

/// Copies the pod directory `path` (listed as `listing`) to a local directory, whole or
/// not at all: it is filled beside its final place and renamed there at the end.
async fn download_dir(
    client: &Client,
    id: &str,
    path: &str,
    listing: berth_api::FileListing,
    dst: &str,
) -> Result<()> {
    let target = local_target(dst, path);
    if target.exists() {
        bail!(
            "{} exists already; name a new path or a directory to copy into",
            target.display()
        );
    }
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let staging = tempfile::Builder::new()
        .prefix(".berth-download-")
        .tempdir_in(parent)
        .with_context(|| format!("cannot write in {}", parent.display()))?;
    let mut tally = Tally::default();
    let mut pending = vec![(
        path.trim_end_matches('/').to_string(),
        staging.path().to_path_buf(),
        Some(listing),
    )];
    while let Some((remote, local, listing)) = pending.pop() {
        let listing = match listing {
            Some(listing) => listing,
            None => {
                std::fs::create_dir(&local)
                    .with_context(|| format!("cannot make {}", local.display()))?;
                client.list_files(id, &remote).await?
            }
        };
        tally.dirs += 1;
        if listing.truncated {
            bail!(
                "{id}:{remote} has more entries than one listing gives; copy its parts one by one"
            );
        }
        for entry in listing.entries {
            // Names come from the pod: only plain names make local paths.
            if entry.name.is_empty()
                || entry.name == "."
                || entry.name == ".."
                || entry.name.contains('/')
            {
                eprintln!(
                    "note: skipped an entry of {id}:{remote} named {:?}",
                    entry.name
                );
                continue;
            }
            let child_remote = format!("{remote}/{}", entry.name);
            let child_local = local.join(&entry.name);
            match entry.kind {
                berth_api::FileKind::Directory => pending.push((child_remote, child_local, None)),
                berth_api::FileKind::File => {
                    tally.bytes += download_file(client, id, &child_remote, &child_local).await?;
                    tally.files += 1;
                }
                _ => {
                    eprintln!("note: skipped {id}:{child_remote} (not a regular file or directory)")
                }
            }
        }
    }
    let staged = staging.keep();
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&staged, &target)
        .with_context(|| format!("cannot write {}", target.display()))?;
    tally.report(&target.display().to_string());
    Ok(())
}

/// One pod file to a new local file (never through an existing one).
async fn download_file(client: &Client, id: &str, path: &str, local: &Path) -> Result<u64> {
    let resp = client.download(id, path).await?;
    let mode = mode_of(&resp);
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(local)
        .with_context(|| format!("cannot write {}", local.display()))?;
    let mut body = resp.bytes_stream();
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.with_context(|| format!("receiving {id}:{path}"))?;
        size += chunk.len() as u64;
        out.write_all(&chunk)?;
    }
    out.set_permissions(std::fs::Permissions::from_mode(mode & 0o777))?;
    Ok(size)
}

/// The permission bits the server sent with a file (`X-Berth-Mode`, octal).
fn mode_of(resp: &reqwest::Response) -> u32 {
    resp.headers()
        .get("x-berth-mode")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| u32::from_str_radix(v, 8).ok())
        .unwrap_or(0o644)
}

/// A pod path naming a directory (ending in `/`) gets the local file's name.
fn keep_name(path: &str, src: &Path) -> String {
    match src.file_name() {
        Some(name) if path.ends_with('/') => format!("{path}{}", name.to_string_lossy()),
        _ => path.to_string(),
    }
}

/// A local directory (existing, or named with a trailing `/`) gets the pod file's name.
fn local_target(dst: &str, pod_path: &str) -> PathBuf {
    let name = pod_path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("file");
    if dst.ends_with('/') || Path::new(dst).is_dir() {
        Path::new(dst).join(name)
    } else {
        PathBuf::from(dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_are_told_apart_as_docker_does() {
        assert_eq!(
            Place::parse("pod-12:/tmp/x"),
            Place::Pod {
                id: "pod-12".into(),
                path: "/tmp/x".into()
            }
        );
        assert_eq!(Place::parse("./a:b"), Place::Local("./a:b".into()));
        assert_eq!(Place::parse("/abs/a:b"), Place::Local("/abs/a:b".into()));
        assert_eq!(Place::parse("plain.txt"), Place::Local("plain.txt".into()));
        assert_eq!(Place::parse("-"), Place::Local("-".into()));
    }

    #[test]
    fn directories_keep_the_file_name() {
        assert_eq!(keep_name("/tmp/", Path::new("dir/a.csv")), "/tmp/a.csv");
        assert_eq!(keep_name("/tmp/b.csv", Path::new("a.csv")), "/tmp/b.csv");
        let here = tempfile::tempdir().expect("tempdir");
        let dir = here.path().to_string_lossy().to_string();
        assert_eq!(local_target(&dir, "/etc/hosts"), here.path().join("hosts"));
        assert_eq!(local_target("out/", "/x/y.txt"), Path::new("out/y.txt"));
        assert_eq!(local_target("z.txt", "/x/y.txt"), Path::new("z.txt"));
    }
}
