//! A registry that misbehaves: an HTTP proxy in front of the test registry that breaks the
//! first download of each large blob, as a flaky network or a bad mirror would.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Context, Res};

/// Blobs larger than this are layers (configs and the tiny test layers are smaller).
const LARGE_BLOB: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Sends half the body, waits a second (so other downloads finish), then closes.
    CutHalfway,
    /// Flips one byte in the middle of the body.
    Corrupt,
}

/// One request the proxy answered.
#[derive(Debug, Clone)]
pub struct Served {
    pub method: String,
    pub path: String,
    /// The fault applied, if any.
    pub fault: Option<Fault>,
}

pub struct FaultProxy {
    pub addr: SocketAddr,
    served: Arc<Mutex<Vec<Served>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`, applying `fault` to the
    /// first GET of each large blob.
    pub fn start(upstream: SocketAddr, fault: Fault) -> Res<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").ctx("bind the fault proxy")?;
        let addr = listener.local_addr().ctx("fault proxy address")?;
        listener
            .set_nonblocking(true)
            .ctx("fault proxy nonblocking")?;
        let served = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let faulted = Arc::new(Mutex::new(HashSet::<String>::new()));
        let accept = {
            let (served, stop) = (served.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let (served, faulted) = (served.clone(), faulted.clone());
                            std::thread::spawn(move || {
                                let _ = serve(client, upstream, fault, &faulted, &served);
                            });
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Ok(FaultProxy {
            addr,
            served,
            stop,
            accept: Some(accept),
        })
    }

    /// `127.0.0.1:PORT`, as an image reference's registry.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn served(&self) -> Vec<Served> {
        self.served
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// One request: its head is forwarded with `Connection: close`, so every request has a
/// connection (and a fault decision) of its own; the whole response is read, then passed on.
fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    fault: Fault,
    faulted: &Mutex<HashSet<String>>,
    served: &Mutex<Vec<Served>>,
) -> Res<()> {
    client.set_nonblocking(false).ctx("blocking client")?;
    client
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ctx("client timeout")?;
    let head = read_head(&mut client)?;
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut forwarded = format!("{request_line}\r\n");
    for line in lines.filter(|l| !l.is_empty()) {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            forwarded.push_str(line);
            forwarded.push_str("\r\n");
        }
    }
    forwarded.push_str("Connection: close\r\n\r\n");

    let mut registry = TcpStream::connect(upstream).ctx("connect to the registry")?;
    registry
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ctx("registry timeout")?;
    registry
        .write_all(forwarded.as_bytes())
        .ctx("forward the request")?;
    let mut response = Vec::new();
    registry
        .read_to_end(&mut response)
        .ctx("read the registry's response")?;
    let body_at = find(&response, b"\r\n\r\n").map_or(response.len(), |at| at + 4);
    let body_len = response.len() - body_at;

    let applies = method == "GET"
        && path.contains("/blobs/")
        && body_len > LARGE_BLOB
        && faulted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path.clone());
    served
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Served {
            method,
            path,
            fault: applies.then_some(fault),
        });
    match (applies, fault) {
        (true, Fault::CutHalfway) => {
            client
                .write_all(&response[..body_at + body_len / 2])
                .ctx("send half")?;
            client.flush().ctx("flush")?;
            std::thread::sleep(Duration::from_secs(1));
            let _ = client.shutdown(Shutdown::Both);
        }
        (true, Fault::Corrupt) => {
            response[body_at + body_len / 2] ^= 0xff;
            client.write_all(&response).ctx("send corrupted")?;
        }
        (false, _) => client.write_all(&response).ctx("send")?,
    }
    Ok(())
}

fn read_head(stream: &mut TcpStream) -> Res<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while find(&head, b"\r\n\r\n").is_none() {
        if head.len() > 64 * 1024 {
            return Err("request head over 64 KiB".into());
        }
        match stream.read(&mut byte).ctx("read the request head")? {
            0 => return Err("the client closed before its request head ended".into()),
            _ => head.push(byte[0]),
        }
    }
    Ok(head)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
