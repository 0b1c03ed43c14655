//! A container's log file as a stream: what is there, and with `follow` what comes, until
//! the container has ended and the file has nothing new. The file is the shim's; this only
//! reads it.

use std::io::SeekFrom;
use std::time::Duration;

use berth_runtime::ShimFiles;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::watch::current_state;
use super::{LogStream, NodeError, ProcessState};

/// How often a followed log looks for new lines: soon after a line (output comes in bursts,
/// and a pod's first lines matter most), backing off to the slowest while it is quiet.
const FOLLOW_FIRST: Duration = Duration::from_millis(5);
const FOLLOW_SLOWEST: Duration = Duration::from_millis(200);

/// The whole log, its rotated part first; with `follow`, what comes after, across
/// rotations (a current file shorter than what was read of it has been rotated: the rest of
/// it is read from the rotated file).
pub fn stream(files: ShimFiles, follow: bool) -> LogStream {
    futures_util::stream::unfold(None::<u64>, move |offset| {
        let files = files.clone();
        async move {
            let path = files.log();
            let Some(offset) = offset else {
                // First: the part rotated away, if any.
                return match read_from(&files.rotated_log(), 0).await {
                    Ok(older) => Some((Ok(Bytes::from(older)), Some(0))),
                    Err(e) => Some((Err(e), None)),
                };
            };
            let mut interval = FOLLOW_FIRST;
            loop {
                if follow && file_len(&path).await.is_some_and(|len| len < offset) {
                    // Rotated since the last read: the rest of that file is now the older part.
                    return match read_from(&files.rotated_log(), offset).await {
                        Ok(rest) => Some((Ok(Bytes::from(rest)), Some(0))),
                        Err(e) => Some((Err(e), None)),
                    };
                }
                let chunk = match read_from(&path, offset).await {
                    Ok(chunk) => chunk,
                    Err(e) => return Some((Err(e), None)),
                };
                if !chunk.is_empty() {
                    let next = offset + chunk.len() as u64;
                    return Some((Ok(Bytes::from(chunk)), Some(next)));
                }
                if !follow || current_state(&files) != ProcessState::Running {
                    // One last read: the shim may have flushed while the state was read.
                    return match read_from(&path, offset).await {
                        Ok(tail) if tail.is_empty() => None,
                        Ok(tail) => Some((Ok(Bytes::from(tail)), None)),
                        Err(e) => Some((Err(e), None)),
                    };
                }
                tokio::time::sleep(interval).await;
                interval = (interval * 2).min(FOLLOW_SLOWEST);
            }
        }
    })
    .filter(|chunk| std::future::ready(!matches!(chunk, Ok(bytes) if bytes.is_empty())))
    .boxed()
}

async fn file_len(path: &std::path::Path) -> Option<u64> {
    tokio::fs::metadata(path).await.ok().map(|m| m.len())
}

/// The file from `offset` on; a file not written yet reads as empty.
async fn read_from(path: &std::path::Path, offset: u64) -> Result<Vec<u8>, NodeError> {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(NodeError::io(path)(e)),
    };
    file.seek(SeekFrom::Start(offset))
        .await
        .map_err(NodeError::io(path))?;
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)
        .await
        .map_err(NodeError::io(path))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(s: LogStream) -> Result<Vec<u8>, NodeError> {
        let mut out = Vec::new();
        let mut s = s;
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn a_log_not_written_yet_is_empty_and_a_written_one_is_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = ShimFiles::new(dir.path());
        assert!(collect(stream(files.clone(), false))
            .await
            .expect("reads")
            .is_empty());
        std::fs::write(files.log(), "a\nb\n").expect("write");
        assert_eq!(
            collect(stream(files.clone(), true)).await.expect("reads"),
            b"a\nb\n",
            "a container that is not running ends a followed log"
        );
    }

    #[tokio::test]
    async fn the_rotated_part_comes_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = ShimFiles::new(dir.path());
        std::fs::write(files.rotated_log(), "old 1\nold 2\n").expect("write");
        std::fs::write(files.log(), "new 3\n").expect("write");
        assert_eq!(
            collect(stream(files, false)).await.expect("reads"),
            b"old 1\nold 2\nnew 3\n"
        );
    }

    #[tokio::test]
    async fn an_unreadable_log_is_an_error_not_an_empty_body() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = ShimFiles::new(dir.path());
        // A directory where the file should be: open works, reading fails.
        std::fs::create_dir(files.log()).expect("dir");
        assert!(collect(stream(files, false)).await.is_err());
    }
}
