//! Moving files in and out of a running pod: the node side of `berth container cp` and the
//! SDK's `instance.fs`. Paths resolve as the pod sees them ([`PodFiles`]); bytes stream in
//! both directions, bounded by the caller's cap.

use std::io::Write;

use berth_api::{FileInfo, FileKind, FileListing};
use berth_runtime::{PodFiles, SandboxDir};
use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::NodeError;

const CHUNK: usize = 64 * 1024;

/// A pod's file on its way out.
pub struct FileDownload {
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    pub body: BoxStream<'static, Result<Bytes, NodeError>>,
}

/// The bytes of an upload, as they arrive.
pub type UploadBody = BoxStream<'static, Result<Bytes, std::io::Error>>;

pub async fn read(dir: SandboxDir, path: String, max: u64) -> Result<FileDownload, NodeError> {
    let opened = blocking("opening a pod file", move || {
        Ok(PodFiles::of(&dir)?.open(&path)?)
    })
    .await?;
    if opened.size > max {
        return Err(NodeError::FileTooLarge { max });
    }
    let (size, mode) = (opened.size, opened.mode);
    // The size at open bounds what is sent, however much the pod appends meanwhile.
    let file = tokio::fs::File::from_std(opened.file).take(size);
    let body = futures_util::stream::unfold(file, |mut file| async move {
        let mut buf = vec![0; CHUNK];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), file))
            }
            Err(source) => Some((
                Err(NodeError::Io {
                    path: "pod file".into(),
                    source,
                }),
                file,
            )),
        }
    });
    Ok(FileDownload {
        size,
        mode,
        body: body.boxed(),
    })
}

/// What the upload's reader hands its writer.
enum Piece {
    Data(Bytes),
    /// Every byte arrived: the file may be put in place.
    End,
}

/// Writes `body` to `path` in the pod, whole or not at all; more than `max` bytes is refused.
pub async fn write(
    dir: SandboxDir,
    path: String,
    mode: u32,
    mut body: UploadBody,
    max: u64,
) -> Result<u64, NodeError> {
    let (tx, mut rx) = mpsc::channel::<Piece>(8);
    let writer = tokio::task::spawn_blocking(move || -> Result<(), NodeError> {
        let mut new = PodFiles::of(&dir)?.create(&path, mode)?;
        loop {
            match rx.blocking_recv() {
                Some(Piece::Data(chunk)) => {
                    new.file()
                        .write_all(&chunk)
                        .map_err(|source| NodeError::Io {
                            path: path.clone().into(),
                            source,
                        })?
                }
                Some(Piece::End) => return Ok(new.commit()?),
                // The upload failed or its client went away: dropping `new` removes it.
                None => return Err(NodeError::Upload("the upload ended early".into())),
            }
        }
    });
    let mut written = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| NodeError::Upload(e.to_string()))?;
        written += chunk.len() as u64;
        if written > max {
            return Err(NodeError::FileTooLarge { max });
        }
        if tx.send(Piece::Data(chunk)).await.is_err() {
            break; // the writer failed; its error is the one to report
        }
    }
    let _ = tx.send(Piece::End).await;
    writer
        .await
        .map_err(NodeError::task("writing a pod file"))??;
    Ok(written)
}

pub async fn list(dir: SandboxDir, path: String) -> Result<FileListing, NodeError> {
    blocking("listing a pod directory", move || {
        let listing = PodFiles::of(&dir)?.list(&path)?;
        Ok(FileListing {
            entries: listing
                .entries
                .into_iter()
                .map(|e| FileInfo {
                    name: e.name,
                    kind: match e.kind {
                        berth_runtime::FileKind::File => FileKind::File,
                        berth_runtime::FileKind::Directory => FileKind::Directory,
                        berth_runtime::FileKind::Symlink => FileKind::Symlink,
                        berth_runtime::FileKind::Other => FileKind::Other,
                    },
                    size: e.size,
                    mode: format!("{:o}", e.mode),
                    modified: e.modified,
                })
                .collect(),
            truncated: listing.truncated,
            path,
        })
    })
    .await
}

pub async fn make_dir(dir: SandboxDir, path: String, mode: u32) -> Result<bool, NodeError> {
    blocking("making a pod directory", move || {
        Ok(PodFiles::of(&dir)?.make_dir(&path, mode)?)
    })
    .await
}

async fn blocking<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> Result<T, NodeError> + Send + 'static,
) -> Result<T, NodeError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(NodeError::task(what))?
}
