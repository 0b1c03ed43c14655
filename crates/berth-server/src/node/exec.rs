//! Running a command in a live container through its runtime (`runc exec`, `runsc exec`),
//! its output streamed as it comes.

use std::process::Stdio;
use std::time::Duration;

use berth_api::ExecEvent;
use berth_runtime::OciRuntime;
use futures_util::stream::BoxStream;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Child;
use tokio::sync::mpsc;

use super::NodeError;

/// What the node runs; validated by the API.
#[derive(Debug, Clone)]
pub struct ExecCommand {
    pub command: Vec<String>,
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    pub timeout: Option<Duration>,
}

/// The output events, ending with `Exit` or `Error`.
pub type ExecStream = BoxStream<'static, ExecEvent>;

const CHUNK: usize = 16 * 1024;
/// Between the SIGTERM the runtime forwards and a SIGKILL of the runtime itself.
const STOP_GRACE: Duration = Duration::from_secs(2);

pub fn spawn(runtime: &OciRuntime, id: &str, exec: ExecCommand) -> Result<ExecStream, NodeError> {
    let cmd = runtime.exec_command(id, &exec.command, &exec.env, exec.workdir.as_deref(), false);
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| NodeError::Io {
        path: runtime.binary().to_path_buf(),
        source,
    })?;
    let (tx, rx) = mpsc::channel::<ExecEvent>(64);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    tokio::spawn(async move {
        let out = forward(stdout, tx.clone(), ExecEvent::Stdout);
        let err = forward(stderr, tx.clone(), ExecEvent::Stderr);
        let ended = async {
            tokio::join!(out, err);
            child.wait().await
        };
        let deadline = async {
            match exec.timeout {
                Some(limit) => tokio::time::sleep(limit).await,
                None => std::future::pending().await,
            }
        };
        let last = tokio::select! {
            status = ended => match status {
                Ok(status) => ExecEvent::Exit(exit_code(status)),
                Err(e) => ExecEvent::Error(format!("waiting for the command: {e}")),
            },
            () = deadline => {
                stop(&mut child).await;
                ExecEvent::Error(format!(
                    "the command ran past its {} s timeout and was stopped",
                    exec.timeout.map_or(0, |t| t.as_secs())
                ))
            }
            () = tx.closed() => {
                // Nobody reads the output any more: the command goes too.
                stop(&mut child).await;
                return;
            }
        };
        let _ = tx.send(last).await;
    });
    Ok(Box::pin(futures_util::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|event| (event, rx)) },
    )))
}

/// SIGTERM to the runtime, which forwards it to the command; SIGKILL to the runtime if the
/// command is still there after [`STOP_GRACE`]. (A command that ignores SIGTERM then lives on
/// in the pod, reparented to its init, until the pod stops.)
pub(super) async fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

pub(super) fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// Sends what `pipe` yields as events, in chunks cut only between UTF-8 characters.
async fn forward<R: AsyncRead + Unpin>(
    pipe: Option<R>,
    tx: mpsc::Sender<ExecEvent>,
    event: fn(String) -> ExecEvent,
) {
    let Some(mut pipe) = pipe else { return };
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let whole = complete_utf8_prefix(&pending);
        if whole > 0 {
            let text = String::from_utf8_lossy(&pending[..whole]).into_owned();
            pending.drain(..whole);
            if tx.send(event(text)).await.is_err() {
                return;
            }
        }
    }
    if !pending.is_empty() {
        let _ = tx
            .send(event(String::from_utf8_lossy(&pending).into_owned()))
            .await;
    }
}

/// How much of `bytes` can be sent now: all of it, unless it ends inside a UTF-8 character
/// that the next read may complete.
fn complete_utf8_prefix(bytes: &[u8]) -> usize {
    match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        // `error_len` of None: the input ends in the middle of a character.
        Err(e) if e.error_len().is_none() => e.valid_up_to(),
        Err(_) => bytes.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_split_across_reads_waits_for_its_end() {
        let euro = "€".as_bytes();
        assert_eq!(complete_utf8_prefix(b"abc"), 3);
        assert_eq!(complete_utf8_prefix(&[b'a', euro[0], euro[1]]), 1);
        assert_eq!(complete_utf8_prefix(euro), 3);
        // Bytes that can never be UTF-8 go as they are (replaced when sent).
        assert_eq!(complete_utf8_prefix(&[b'a', 0xff, b'b']), 3);
    }
}
