//! `berth container cp SRC DST`: one file into or out of a running pod, docker's form.

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

async fn upload(src: &str, id: &str, path: &str) -> Result<()> {
    let meta = std::fs::metadata(src).with_context(|| format!("cannot read {src}"))?;
    if meta.is_dir() {
        bail!("{src} is a directory; berth container cp copies one file (tar a directory first)");
    }
    let target = keep_name(path, Path::new(src));
    let file = tokio::fs::File::open(src)
        .await
        .with_context(|| format!("cannot open {src}"))?;
    let mode = meta.permissions().mode() & 0o7777;
    let written = Client::from_env()?
        .upload(id, &target, mode, reqwest::Body::from(file))
        .await?;
    println!("Copied {} bytes to {id}:{}", written.size, written.path);
    Ok(())
}

async fn download(id: &str, path: &str, dst: &str) -> Result<()> {
    let resp = Client::from_env()?.download(id, path).await?;
    let mode = resp
        .headers()
        .get("x-berth-mode")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| u32::from_str_radix(v, 8).ok())
        .unwrap_or(0o644);
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
