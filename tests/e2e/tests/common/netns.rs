//! A network namespace of a test's own, and TCP forwarding across its edge.
//!
//! A client that watches the host's interfaces (Chromium aborts requests in flight with
//! ERR_NETWORK_CHANGED when any link appears or goes) is run inside one, so the bridges and
//! veths the other tests make and delete meanwhile are none of its business; it reaches
//! loopback services of the host through a [`Forward`].

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::sched::{setns, CloneFlags};

use super::{command_output, random_hex, Context, Res};

/// A network namespace with loopback and one veth pair (so the client inside sees itself
/// online); deleted when dropped.
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn create(purpose: &str) -> Res<Netns> {
        let ns = Netns {
            name: format!("berthe2e-{purpose}-{}", random_hex(3)),
        };
        command_output("ip", &["netns", "add", &ns.name])?;
        // No IPv6 here: a link-local address finishing duplicate address detection a second
        // after the links come up is an address change, which Chromium answers by failing
        // its requests in flight with ERR_NETWORK_CHANGED (seen once in CI at /tree).
        command_output(
            "ip",
            &[
                "netns",
                "exec",
                &ns.name,
                "sh",
                "-c",
                "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 && \
                 echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6",
            ],
        )?;
        ns.ip(&["link", "set", "lo", "up"])?;
        // Both ends of the pair stay inside: the host sees no new link.
        ns.ip(&[
            "link", "add", "online0", "type", "veth", "peer", "name", "online1",
        ])?;
        ns.ip(&["addr", "add", "192.0.2.1/24", "dev", "online0"])?;
        ns.ip(&["link", "set", "online0", "up"])?;
        ns.ip(&["link", "set", "online1", "up"])?;
        Ok(ns)
    }

    fn ip(&self, args: &[&str]) -> Res<String> {
        let mut all = vec!["netns", "exec", &self.name, "ip"];
        all.extend_from_slice(args);
        command_output("ip", &all)
    }

    /// `program` to be run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs `make` on a thread that has joined the namespace: a socket it opens belongs to the
    /// namespace for good, whichever thread uses it later.
    fn inside<T: Send + 'static>(
        &self,
        make: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> Res<T> {
        in_namespace(self.path(), make)
    }

    /// A listener on `addr` inside the namespace.
    pub fn listen(&self, addr: SocketAddr) -> Res<TcpListener> {
        self.inside(move || TcpListener::bind(addr))
            .with_ctx(|| format!("listen on {addr} in {}", self.name))
    }

    /// Forwards connections made to `host_side` (on the host) to `addr` inside the namespace.
    pub fn forward_in(&self, host_side: SocketAddr, addr: SocketAddr) -> Res<Forward> {
        let listener =
            TcpListener::bind(host_side).with_ctx(|| format!("listen on {host_side}"))?;
        let path = self.path();
        Forward::start(listener, move || {
            in_namespace(path.clone(), move || {
                TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            })
            .map_err(io::Error::other)
        })
    }

    /// Forwards connections made to `addr` inside the namespace to the same address on the
    /// host (a client inside reaches a host loopback service at its usual address).
    pub fn forward_out(&self, addr: SocketAddr) -> Res<Forward> {
        let listener = self.listen(addr)?;
        Forward::start(listener, move || {
            TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = command_output("ip", &["netns", "del", &self.name]) {
            eprintln!("cleanup: deleting the network namespace {}: {e}", self.name);
        }
    }
}

fn in_namespace<T: Send + 'static>(
    path: PathBuf,
    make: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Res<T> {
    std::thread::spawn(move || -> Res<T> {
        let ns = std::fs::File::open(&path).with_ctx(|| format!("open {}", path.display()))?;
        setns(&ns, CloneFlags::CLONE_NEWNET).with_ctx(|| format!("join {}", path.display()))?;
        make().map_err(|e| e.to_string())
    })
    .join()
    .map_err(|_| "the namespace thread panicked".to_string())?
}

/// Copies every connection accepted on one side to a new connection on the other, until
/// dropped.
pub struct Forward {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Forward {
    fn start(
        listener: TcpListener,
        connect: impl Fn() -> io::Result<TcpStream> + Send + Sync + 'static,
    ) -> Res<Forward> {
        // Polled, so dropping needs no wake-up connection into a namespace.
        listener.set_nonblocking(true).ctx("nonblocking listener")?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let connect = Arc::new(connect);
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let connect = connect.clone();
                        std::thread::spawn(move || {
                            let _ = client.set_nonblocking(false);
                            if let Ok(server) = connect() {
                                pipe(client, server);
                            }
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(Forward {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Copies both ways until each side has finished sending.
fn pipe(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let one_way = |mut from: TcpStream, mut to: TcpStream| {
        let _ = io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    };
    let back = std::thread::spawn(move || one_way(b2, a2));
    one_way(a, b);
    let _ = back.join();
}
