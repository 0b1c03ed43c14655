//! sd_notify(3) without libsystemd: under a `Type=notify` unit the server says when it is
//! ready, reloading (a hot restart) or stopping, and a new process of a hot restart names
//! itself the service's main process, so systemd follows it rather than the old one.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` (newline-separated `KEY=value` lines) to `$NOTIFY_SOCKET`, if set.
pub fn notify(state: &str) {
    if let Some(socket) = std::env::var_os("NOTIFY_SOCKET") {
        if let Err(e) = send(&socket.to_string_lossy(), state) {
            tracing::debug!("sd_notify {state:?}: {e}");
        }
    }
}

/// `socket` is a path, or an abstract name written with a leading `@`.
fn send(socket: &str, state: &str) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = match socket.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
        None => SocketAddr::from_pathname(socket)?,
    };
    let sender = UnixDatagram::unbound()?;
    sender.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_state_reaches_the_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let receiver = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
        super::send(&path.to_string_lossy(), "READY=1\nMAINPID=42").expect("send");
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1\nMAINPID=42");

        let name = format!("@berth-test-{}", std::process::id());
        let abstract_rx = {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name.as_bytes()[1..])
                .expect("addr");
            std::os::unix::net::UnixDatagram::bind_addr(&addr).expect("bind abstract")
        };
        super::send(&name, "STOPPING=1").expect("send abstract");
        let n = abstract_rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
