//! Which container serves which `(stub, port)`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::Activity;

/// One container reachable for one stub.
#[derive(Debug, Clone)]
pub struct Route {
    pub container_id: String,
    /// The pod's addresses (IPv4 first); the port comes from the host name.
    pub addrs: Vec<std::net::IpAddr>,
    pub ports: Vec<u16>,
    pub activity: Arc<Activity>,
    /// Requests need a token (see [`Authorizer`](crate::Authorizer)).
    pub authorized: bool,
    /// How the pod's addresses are reached when they are not this machine's: a pod on
    /// another machine is reached through that machine, never by routing to its network.
    pub via: Option<Arc<dyn Tunnel>>,
}

/// A byte stream to a pod's port.
pub trait UpstreamIo: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> UpstreamIo for T {}

/// Opens connections to pod addresses that live on another machine.
pub trait Tunnel: Send + Sync + std::fmt::Debug + 'static {
    fn open(&self, addr: SocketAddr) -> BoxFuture<'_, std::io::Result<Box<dyn UpstreamIo>>>;
}

impl Route {
    pub fn socket_addrs(&self, port: u16) -> Vec<SocketAddr> {
        self.addrs
            .iter()
            .map(|ip| SocketAddr::new(*ip, port))
            .collect()
    }

    /// A connection to the pod's `port` (IPv4 first, then IPv6, so apps listening on only
    /// one family are reached), through its tunnel if it has one; else why none was made.
    pub async fn connect(&self, port: u16, limit: Duration) -> Result<Box<dyn UpstreamIo>, String> {
        let mut reason = String::from("the pod has no address");
        for addr in self.socket_addrs(port) {
            let opened = async {
                match &self.via {
                    Some(tunnel) => tunnel.open(addr).await,
                    None => {
                        let tcp = TcpStream::connect(addr).await?;
                        let _ = tcp.set_nodelay(true);
                        Ok(Box::new(tcp) as Box<dyn UpstreamIo>)
                    }
                }
            };
            match tokio::time::timeout(limit, opened).await {
                Ok(Ok(io)) => return Ok(io),
                Ok(Err(e)) => reason = e.to_string(),
                Err(_) => reason = "connection timed out".into(),
            }
        }
        Err(reason)
    }
}

#[derive(Debug, Default)]
pub struct RouteTable {
    /// stub id → routes, newest last.
    by_stub: RwLock<HashMap<String, Vec<Arc<Route>>>>,
    /// Wakes requests waiting for a starting pod the moment any route is added.
    inserted: tokio::sync::Notify,
}

impl RouteTable {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&self, stub_id: &str, route: Route) {
        let mut map = self.by_stub.write().unwrap_or_else(|p| p.into_inner());
        let routes = map.entry(stub_id.to_string()).or_default();
        routes.retain(|r| r.container_id != route.container_id);
        routes.push(Arc::new(route));
        drop(map);
        self.inserted.notify_waiters();
    }

    /// Completes at the next [`RouteTable::insert`]; enable it (or poll it once) before
    /// looking up, so an insert in between is not missed.
    pub fn inserted(&self) -> tokio::sync::futures::Notified<'_> {
        self.inserted.notified()
    }

    pub fn remove(&self, container_id: &str) {
        let mut map = self.by_stub.write().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, routes| {
            routes.retain(|r| r.container_id != container_id);
            !routes.is_empty()
        });
    }

    /// The newest container of the stub that exposes `port` (shared: requests look it up
    /// on every request, and a copy would allocate).
    pub fn lookup(&self, stub_id: &str, port: u16) -> Option<Arc<Route>> {
        let map = self.by_stub.read().unwrap_or_else(|p| p.into_inner());
        map.get(stub_id)?
            .iter()
            .rev()
            .find(|r| r.ports.contains(&port))
            .cloned()
    }

    pub fn len(&self) -> usize {
        let map = self.by_stub.read().unwrap_or_else(|p| p.into_inner());
        map.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(id: &str, ports: &[u16]) -> Route {
        Route {
            container_id: id.into(),
            addrs: vec!["10.213.0.2".parse().expect("ip")],
            ports: ports.to_vec(),
            activity: Arc::default(),
            authorized: false,
            via: None,
        }
    }

    #[test]
    fn newest_matching_port_wins_and_removal_works() {
        let t = RouteTable::new();
        t.insert("s", route("a", &[80]));
        t.insert("s", route("b", &[80, 81]));
        let id = |r: Option<Arc<Route>>| r.map(|r| r.container_id.clone());
        assert_eq!(id(t.lookup("s", 80)), Some("b".into()));
        assert_eq!(id(t.lookup("s", 82)), None);
        t.remove("b");
        assert_eq!(id(t.lookup("s", 80)), Some("a".into()));
        t.remove("a");
        assert!(t.is_empty());
    }
}
