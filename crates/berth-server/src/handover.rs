//! Hot restart: a running server hands its listening sockets to a new `berth server` process
//! (the same binary path, so an upgraded one), as nginx does on SIGUSR2. Connections that
//! arrive meanwhile wait in the sockets' backlog instead of being refused.
//!
//! The two processes talk over a socket pair, one byte per step:
//! 1. the old one starts the successor with the sockets and its end of the pair inherited;
//! 2. the successor checks its configuration and sends `R`; a successor that fails here
//!    leaves the old server serving as before;
//! 3. the old one finishes its API requests and its pod starts and stops, lets go of the
//!    state, and sends `G`;
//! 4. the successor recovers the state, serves, and sends `S`;
//! 5. the old one stops accepting and serves the connections it holds until they close or
//!    its drain limit passes.

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// `name:fd,...` of the listening sockets a successor inherits.
const LISTEN_FDS_ENV: &str = "BERTH_LISTEN_FDS";
/// The successor's end of the socket pair.
const HANDOVER_FD_ENV: &str = "BERTH_HANDOVER_FD";

const READY: u8 = b'R';
const GO: u8 = b'G';
const SERVING: u8 = b'S';

/// How long a successor has to check its configuration.
const READY_LIMIT: Duration = Duration::from_secs(30);
/// How long a successor has from `G` to serving (opening the store, recovering pods).
const SERVING_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("starting the new server {exe}: {source}")]
    Spawn {
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the handover socket: {0}")]
    Socket(#[source] std::io::Error),
    #[error("the new server ended before it was {0}")]
    Ended(&'static str),
    #[error("the new server was not {what} within {limit:?}")]
    TimedOut { what: &'static str, limit: Duration },
    #[error("the new server sent {0:?} out of turn")]
    OutOfTurn(char),
}

/// What the server was asked to do by a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Drain and exit (SIGTERM, Ctrl-C).
    Shutdown,
    /// Hand the sockets to a new process, then drain and exit (SIGUSR2).
    Upgrade,
}

/// How to start a successor: the binary and the arguments after it.
#[derive(Debug, Clone)]
pub struct Relaunch {
    pub exe: PathBuf,
    pub args: Vec<OsString>,
}

/// The listening sockets a predecessor passed down, by name.
#[derive(Debug, Default)]
pub struct Inherited {
    sockets: HashMap<String, OwnedFd>,
}

impl Inherited {
    /// Takes the sockets named in the environment, if this process is a successor.
    pub fn from_env() -> Self {
        let Some(list) = std::env::var_os(LISTEN_FDS_ENV) else {
            return Self::default();
        };
        let mut sockets = HashMap::new();
        for entry in list.to_string_lossy().split(',') {
            let Some((name, fd)) = entry.split_once(':') else {
                continue;
            };
            let Ok(fd) = fd.parse::<RawFd>() else {
                continue;
            };
            if let Some(owned) = adopt_fd(fd) {
                sockets.insert(name.to_string(), owned);
            }
        }
        Self { sockets }
    }

    /// The inherited socket `name`, if it listens on `want` (or on `want`'s address with any
    /// port when `want`'s port is 0). A socket on another address is closed: the new
    /// configuration asks for a different one.
    pub fn take(&mut self, name: &str, want: SocketAddr) -> Option<std::net::TcpListener> {
        let fd = self.sockets.remove(name)?;
        let listener = std::net::TcpListener::from(fd);
        listener.set_nonblocking(true).ok()?;
        let have = listener.local_addr().ok()?;
        let same = have == want || (want.port() == 0 && have.ip() == want.ip());
        if same {
            tracing::info!("{name}: listening on {have}, handed over by the previous server");
            Some(listener)
        } else {
            tracing::info!("{name}: the previous server listened on {have}; now {want}");
            None
        }
    }
}

/// An inherited descriptor, made close-on-exec again so that pods' shims and runc never
/// hold the server's sockets. `None` if it is not open.
fn adopt_fd(fd: RawFd) -> Option<OwnedFd> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    // SAFETY: the predecessor passed this descriptor to this process for it to own; nothing
    // else in the process knows its number.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    fcntl(borrowed, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).ok()?;
    // SAFETY: as above; it is open (fcntl succeeded) and owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The successor's side: its link to the server it takes over from.
pub struct Predecessor {
    link: UnixStream,
}

impl Predecessor {
    /// The link, if this process was started by a handover.
    pub fn from_env() -> Option<Self> {
        let fd: RawFd = std::env::var(HANDOVER_FD_ENV).ok()?.parse().ok()?;
        let owned = adopt_fd(fd)?;
        let std = std::os::unix::net::UnixStream::from(owned);
        std.set_nonblocking(true).ok()?;
        let link = UnixStream::from_std(std).ok()?;
        Some(Self { link })
    }

    /// Says the configuration is good and waits until the old server has let go of the state.
    /// A predecessor that died meanwhile has let go too.
    pub async fn ready(&mut self) -> Result<(), HandoverError> {
        self.link
            .write_all(&[READY])
            .await
            .map_err(HandoverError::Socket)?;
        let mut byte = [0u8];
        match self.link.read(&mut byte).await {
            Ok(1) if byte[0] == GO => Ok(()),
            Ok(1) => Err(HandoverError::OutOfTurn(char::from(byte[0]))),
            _ => {
                tracing::warn!("the previous server went away during the handover");
                Ok(())
            }
        }
    }

    /// Tells the old server to stop accepting: this one serves now.
    pub async fn serving(mut self) {
        let _ = self.link.write_all(&[SERVING]).await;
    }
}

/// The old server's side: the process it started to take over.
pub struct Successor {
    child: Child,
    link: UnixStream,
}

impl Successor {
    /// Starts `relaunch` with `sockets` inherited, and waits for it to find its configuration
    /// good. On failure the successor is gone and nothing changed.
    pub async fn start(
        relaunch: &Relaunch,
        sockets: &[(&str, RawFd)],
    ) -> Result<Successor, HandoverError> {
        let (ours, theirs) =
            std::os::unix::net::UnixStream::pair().map_err(HandoverError::Socket)?;
        let mut passed: Vec<RawFd> = sockets.iter().map(|(_, fd)| *fd).collect();
        passed.push(theirs.as_raw_fd());
        let list = sockets
            .iter()
            .map(|(name, fd)| format!("{name}:{fd}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut cmd = Command::new(&relaunch.exe);
        cmd.args(&relaunch.args)
            .env(LISTEN_FDS_ENV, list)
            .env(HANDOVER_FD_ENV, theirs.as_raw_fd().to_string())
            .stdin(Stdio::null());
        // SAFETY: between fork and exec the closure only calls fcntl(2) on descriptors this
        // process owns, and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                for fd in &passed {
                    if libc::fcntl(*fd, libc::F_SETFD, 0) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|source| HandoverError::Spawn {
            exe: relaunch.exe.clone(),
            source,
        })?;
        drop(theirs);
        ours.set_nonblocking(true).map_err(HandoverError::Socket)?;
        let link = UnixStream::from_std(ours).map_err(HandoverError::Socket)?;
        let mut successor = Successor { child, link };
        match successor.expect(READY, "ready", READY_LIMIT).await {
            Ok(()) => Ok(successor),
            Err(e) => {
                successor.abandon();
                Err(e)
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lets the successor take the state, and waits until it serves.
    pub async fn hand_over(mut self) -> Result<(), HandoverError> {
        self.link
            .write_all(&[GO])
            .await
            .map_err(HandoverError::Socket)?;
        self.expect(SERVING, "serving", SERVING_LIMIT).await
    }

    /// Stops a successor that will not take over.
    pub fn abandon(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn expect(
        &mut self,
        want: u8,
        what: &'static str,
        limit: Duration,
    ) -> Result<(), HandoverError> {
        let mut byte = [0u8];
        match tokio::time::timeout(limit, self.link.read(&mut byte)).await {
            Err(_) => Err(HandoverError::TimedOut { what, limit }),
            Ok(Ok(1)) if byte[0] == want => Ok(()),
            Ok(Ok(1)) => Err(HandoverError::OutOfTurn(char::from(byte[0]))),
            Ok(_) => Err(HandoverError::Ended(what)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inherited_socket_is_kept_only_for_the_same_address() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut inherited = Inherited::default();
        inherited.sockets.insert(
            "api".into(),
            OwnedFd::from(listener.try_clone().expect("dup")),
        );
        inherited
            .sockets
            .insert("ingress".into(), OwnedFd::from(listener));
        let any_port: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let kept = inherited
            .take("api", any_port)
            .expect("same address, any port");
        assert_eq!(kept.local_addr().expect("addr"), addr);
        let elsewhere: SocketAddr = "127.0.0.2:1".parse().expect("addr");
        assert!(inherited.take("ingress", elsewhere).is_none());
        assert!(inherited.take("https", any_port).is_none());
    }

    #[tokio::test]
    async fn a_successor_that_exits_early_is_refused() {
        let relaunch = Relaunch {
            exe: "/bin/sh".into(),
            args: vec!["-c".into(), "exit 3".into()],
        };
        let err = Successor::start(&relaunch, &[])
            .await
            .err()
            .expect("refused");
        assert!(matches!(err, HandoverError::Ended("ready")), "{err}");
    }

    #[tokio::test]
    async fn the_steps_go_in_order() {
        // A successor in bash (dash takes only one-digit descriptors): says R on the inherited link, waits for G, says S.
        let script = r#"printf R >&"$BERTH_HANDOVER_FD"; head -c1 <&"$BERTH_HANDOVER_FD" >/dev/null; printf S >&"$BERTH_HANDOVER_FD""#;
        let relaunch = Relaunch {
            exe: "/bin/bash".into(),
            args: vec!["-c".into(), script.into()],
        };
        let successor = Successor::start(&relaunch, &[]).await.expect("ready");
        assert!(successor.pid() > 0);
        successor.hand_over().await.expect("serving");
    }
}
