//! An interactive command in a live container: the runtime's `exec --tty` run on a
//! pseudo-terminal the node owns, so the caller can type into it and resize it.
//!
//! The runtime sits on the slave side as its controlling terminal. runc (`exec --tty`) puts
//! that terminal in raw mode, opens the pod's own terminal and copies between the two; a
//! resize of ours reaches it as SIGWINCH and it passes the size on. runsc (`exec --process`
//! with `terminal: true`, as its exec has no `--tty`) hands our slave to the sandbox as the
//! command's terminal and forwards SIGWINCH to it. Either way, closing our master hangs the
//! command up.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;

use berth_api::{ExecEvent, TtySize};
use berth_runtime::{tty_process, OciRuntime, RuntimeKind, SandboxDir};
use bytes::Bytes;
use nix::pty::{openpty, Winsize};
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};

use super::exec::{exit_code, stop, ExecCommand};
use super::NodeError;

/// What the caller sends to the command.
#[derive(Debug)]
pub enum TtyInput {
    Data(Bytes),
    Resize(TtySize),
}

/// A running interactive command. Dropping `input` hangs it up and stops it; `ended` says
/// how it ended once `output` has given everything it wrote.
pub struct TtySession {
    pub output: mpsc::Receiver<Bytes>,
    pub input: mpsc::Sender<TtyInput>,
    pub ended: oneshot::Receiver<ExecEvent>,
}

const CHUNK: usize = 16 * 1024;

nix::ioctl_write_ptr_bad!(set_window_size, libc::TIOCSWINSZ, Winsize);

fn winsize(size: TtySize) -> Winsize {
    Winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

pub fn spawn(
    runtime: &OciRuntime,
    dir: &SandboxDir,
    id: &str,
    exec: ExecCommand,
    size: TtySize,
) -> Result<TtySession, NodeError> {
    let io = |source: std::io::Error| NodeError::Io {
        path: runtime.binary().to_path_buf(),
        source,
    };
    let pty = openpty(Some(&winsize(size)), None).map_err(|e| io(e.into()))?;
    let slave = pty.slave;
    // Removed when the session ends (or fails to start).
    let process_file = ProcessFile(match runtime.kind() {
        RuntimeKind::Runc => None,
        RuntimeKind::Gvisor => Some(write_process_file(dir, &exec)?),
    });
    let cmd = match &process_file.0 {
        Some(file) => runtime.exec_process_command(id, file),
        None => runtime.exec_command(id, &exec.command, &exec.env, exec.workdir.as_deref(), true),
    };
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdin(Stdio::from(slave.try_clone().map_err(io)?))
        .stdout(Stdio::from(slave.try_clone().map_err(io)?))
        .stderr(Stdio::from(slave));
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            // A session of its own with the slave (its stdin) as controlling terminal, so
            // resizes reach the runtime as SIGWINCH and a hang-up reaches it too.
            nix::unistd::setsid()?;
            if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(io)?;
    drop(cmd); // our copies of the slave: reads of the master end when the runtime's do
    let master = nonblocking(pty.master).map_err(io)?;
    // SAFETY: the OwnedFd is moved in, so the descriptor stays open and the same for the
    // AsyncFd's whole life.
    let master = unsafe { AsyncFd::register(master) }.map_err(|e| io(e.into()))?;

    let (out_tx, out_rx) = mpsc::channel::<Bytes>(64);
    let (in_tx, mut in_rx) = mpsc::channel::<TtyInput>(64);
    let (end_tx, end_rx) = oneshot::channel();
    tokio::spawn(async move {
        let _process_file = process_file;
        let mut buf = vec![0u8; CHUNK];
        let deadline = async {
            match exec.timeout {
                Some(limit) => tokio::time::sleep(limit).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        let mut input_open = true;
        let outcome = loop {
            tokio::select! {
                read = read_some(&master, &mut buf) => match read {
                    // EIO: every holder of the slave is gone, the command with them.
                    Ok(0) | Err(_) => break None,
                    Ok(n) => {
                        if out_tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                            break Some(None);
                        }
                    }
                },
                input = in_rx.recv(), if input_open => match input {
                    Some(TtyInput::Data(data)) => {
                        if write_all(&master, &data).await.is_err() {
                            input_open = false;
                        }
                    }
                    Some(TtyInput::Resize(size)) => {
                        // SAFETY: a valid descriptor and a Winsize that outlives the call.
                        let _ = unsafe { set_window_size(master.as_raw_fd(), &winsize(size)) };
                    }
                    // The caller hung up: so does the command.
                    None => break Some(None),
                },
                () = &mut deadline => break Some(Some(ExecEvent::Error(format!(
                    "the command ran past its {} s timeout and was stopped",
                    exec.timeout.map_or(0, |t| t.as_secs())
                )))),
            }
        };
        let last = match outcome {
            None => match child.wait().await {
                Ok(status) => ExecEvent::Exit(exit_code(status)),
                Err(e) => ExecEvent::Error(format!("waiting for the command: {e}")),
            },
            Some(event) => {
                drop(master);
                stop(&mut child).await;
                match event {
                    Some(event) => event,
                    None => return,
                }
            }
        };
        let _ = end_tx.send(last);
    });
    Ok(TtySession {
        output: out_rx,
        input: in_tx,
        ended: end_rx,
    })
}

/// runsc's process file, if any, removed when dropped.
struct ProcessFile(Option<PathBuf>);

impl Drop for ProcessFile {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The process for runsc's `exec --process`, next to the pod's bundle.
fn write_process_file(dir: &SandboxDir, exec: &ExecCommand) -> Result<PathBuf, NodeError> {
    let process = tty_process(
        &dir.bundle(),
        &exec.command,
        &exec.env,
        exec.workdir.as_deref(),
    )?;
    let path = dir
        .path()
        .join(format!("tty-{:016x}.json", rand::random::<u64>()));
    let json = serde_json::to_vec(&process).map_err(|e| NodeError::Io {
        path: path.clone(),
        source: e.into(),
    })?;
    std::fs::write(&path, json).map_err(|source| NodeError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

fn nonblocking(fd: OwnedFd) -> std::io::Result<OwnedFd> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(fd)
}

async fn read_some(fd: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        let mut ready = fd.readable().await?;
        match ready.try_io(|inner| Ok(nix::unistd::read(inner.get_ref(), buf)?)) {
            Ok(result) => return result,
            Err(_would_block) => continue,
        }
    }
}

async fn write_all(fd: &AsyncFd<OwnedFd>, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        let mut ready = fd.writable().await?;
        match ready.try_io(|inner| Ok(nix::unistd::write(inner.get_ref(), data)?)) {
            Ok(Ok(n)) => data = &data[n..],
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}
