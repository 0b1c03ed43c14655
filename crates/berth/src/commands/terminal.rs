//! `berth shell` and `berth container exec -it`: a command in a pod on a terminal, driven
//! from ours. Our terminal goes raw for the session (the pod's terminal does the echo and
//! line editing), and is restored however it ends.

use std::os::fd::AsFd;

use anyhow::{bail, Context, Result};
use berth_api::{ExecRequest, TtySize};
use nix::sys::termios::{self, SetArg, Termios};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::ShellArgs;
use crate::client::{Client, TtyEvent};

/// bash when the image has it, else the POSIX sh every image with a shell has.
const DEFAULT_SHELL: &str = "if command -v bash >/dev/null 2>&1; then exec bash; else exec sh; fi";

pub async fn shell(args: ShellArgs) -> Result<()> {
    let command = match args.shell {
        Some(shell) => vec![shell],
        None => vec!["/bin/sh".into(), "-c".into(), DEFAULT_SHELL.into()],
    };
    let req = ExecRequest {
        command,
        env: super::container::parse_env(&args.env)?,
        workdir: args.workdir,
        timeout_seconds: None,
    };
    let code = run(&args.id, &req).await?;
    std::process::exit(u8::try_from(code).map_or(255, i32::from));
}

/// Runs `req` in container `id` on a terminal until it ends; its exit code.
pub async fn run(id: &str, req: &ExecRequest) -> Result<i32> {
    let stdin = std::io::stdin();
    if !nix::unistd::isatty(stdin.as_fd()).unwrap_or(false) {
        bail!("the input is not a terminal: run this from one, or drop -t to pipe it");
    }
    // Programs in the pod draw for our kind of terminal, as over ssh.
    let mut req = req.clone();
    if let Ok(term) = std::env::var("TERM") {
        req.env.entry("TERM".into()).or_insert(term);
    }
    let client = Client::from_env()?;
    let mut session = client.exec_tty(id, &req, size_of_ours()).await?;
    let raw = RawMode::enter()?;
    let mut keys = tokio::io::stdin();
    let mut out = tokio::io::stdout();
    let mut resized = signal(SignalKind::window_change()).context("watching for resizes")?;
    let mut buf = vec![0u8; 4096];
    let mut keys_open = true;
    let ended = loop {
        tokio::select! {
            event = session.next() => match event? {
                TtyEvent::Output(bytes) => {
                    out.write_all(&bytes).await?;
                    out.flush().await?;
                }
                TtyEvent::Ended(ended) => break ended,
            },
            read = keys.read(&mut buf), if keys_open => match read {
                Ok(0) | Err(_) => keys_open = false,
                Ok(n) => session.send_keys(&buf[..n]).await?,
            },
            _ = resized.recv() => session.resize(size_of_ours()).await?,
        }
    };
    drop(raw);
    match ended {
        berth_api::ExecEvent::Exit(code) => Ok(code),
        berth_api::ExecEvent::Error(message) => bail!("{message}"),
        _ => bail!("the session ended without the command's exit code"),
    }
}

nix::ioctl_read_bad!(get_window_size, libc::TIOCGWINSZ, nix::pty::Winsize);

/// Our terminal's size, or 24x80 when it does not say.
fn size_of_ours() -> TtySize {
    let mut ws = nix::pty::Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: stdin is a valid descriptor and `ws` outlives the call.
    let ok = unsafe { get_window_size(0, &mut ws) }.is_ok();
    if ok && ws.ws_row > 0 && ws.ws_col > 0 {
        TtySize {
            rows: ws.ws_row,
            cols: ws.ws_col,
        }
    } else {
        TtySize { rows: 24, cols: 80 }
    }
}

/// Our terminal in raw mode until dropped.
struct RawMode(Termios);

impl RawMode {
    fn enter() -> Result<Self> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).context("reading the terminal's mode")?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)
            .context("putting the terminal in raw mode")?;
        Ok(RawMode(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.0);
    }
}
