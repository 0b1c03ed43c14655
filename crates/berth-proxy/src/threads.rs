//! The ingress on threads of its own, one single-threaded runtime each, all accepting from
//! one listening socket (as nginx's workers do). A connection, its requests and its upstream
//! connections then live on one thread: wakeups stay local and nothing is stolen across
//! cores. On the shared multi-threaded runtime the same work cost ~40% more CPU per request
//! (cross-thread wakeups between a client connection and its upstream connection's task).

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::watch;

use crate::ingress::Ingress;
use crate::Listener;

/// The running ingress threads; they stop when this is dropped or [`stop`](Self::stop)ped.
pub struct IngressThreads {
    stop: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
    /// With no threads of its own: the accept loop's task on the caller's runtime.
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Serves `ingress` on `listener` from `threads` threads, or with `0` from a task on the
/// calling Tokio runtime (which must exist). `make` turns each registration of the socket
/// into the [`Listener`] it serves (plain TCP, or TLS over it).
pub fn serve_on_threads<L, F>(
    name: &str,
    listener: std::net::TcpListener,
    threads: usize,
    make: F,
    ingress: Arc<Ingress>,
) -> io::Result<IngressThreads>
where
    L: Listener,
    F: Fn(tokio::net::TcpListener) -> L + Send + Sync + 'static,
{
    listener.set_nonblocking(true)?;
    let make = Arc::new(make);
    let (stop, stopped) = watch::channel(false);
    let mut running = IngressThreads {
        stop,
        threads: Vec::new(),
        task: None,
    };
    if threads == 0 {
        let tcp = tokio::net::TcpListener::from_std(listener)?;
        running.task = Some(tokio::spawn(crate::serve(make(tcp), ingress)));
        return Ok(running);
    }
    for n in 0..threads {
        let socket = listener.try_clone()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (make, ingress, mut stopped) = (make.clone(), ingress.clone(), stopped.clone());
        let thread = std::thread::Builder::new()
            .name(format!("{name}-{n}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let tcp = match tokio::net::TcpListener::from_std(socket) {
                        Ok(tcp) => tcp,
                        Err(e) => {
                            tracing::error!("ingress thread {n}: {e}");
                            return;
                        }
                    };
                    // Once the ingress drains, accepting ends but the runtime lives on
                    // for the connections still open, until the stop.
                    let drained = tokio::select! {
                        () = crate::serve(make(tcp), ingress) => true,
                        _ = stopped.wait_for(|stop| *stop) => false,
                    };
                    if drained {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    }
                });
                // Dropping the runtime ends the thread's open connections.
            })?;
        running.threads.push(thread);
    }
    Ok(running)
}

impl IngressThreads {
    /// Stops accepting, closes the threads' connections and waits for the threads to end.
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for IngressThreads {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::TcpStream;

    use super::*;
    use crate::testing::{request, route, upstream};
    use crate::RouteTable;

    /// An ingress for one upstream pod served on `threads`: its address, the pod's port.
    async fn serving(threads: usize) -> (IngressThreads, std::net::SocketAddr, u16) {
        let port = upstream().await;
        let routes = Arc::new(RouteTable::new());
        routes.insert("stub", route("pod-stub-1", port).0);
        let ingress = Arc::new(Ingress::new("pods.test", routes, Arc::default()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let running =
            serve_on_threads("test-ingress", listener, threads, |tcp| tcp, ingress).expect("serve");
        (running, addr, port)
    }

    #[tokio::test]
    async fn with_no_threads_the_callers_runtime_serves() {
        let (running, addr, port) = serving(0).await;
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        let (status, _) = request(&mut conn, &format!("stub-{port}.pods.test"), "/").await;
        assert_eq!(status, 200);
        running.stop();
    }

    #[tokio::test]
    async fn every_thread_serves_and_stopping_closes_the_socket() {
        let (threads, addr, port) = serving(3).await;
        // Connections land on whichever thread accepts first; all of them must answer.
        let mut conns = Vec::new();
        for _ in 0..12 {
            let mut conn = TcpStream::connect(addr).await.expect("connect");
            let (status, _) = request(&mut conn, &format!("stub-{port}.pods.test"), "/").await;
            assert_eq!(status, 200);
            conns.push(conn);
        }
        tokio::task::spawn_blocking(move || threads.stop())
            .await
            .expect("stop");
        let refused = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await;
        assert!(
            matches!(refused, Ok(Err(_))),
            "the listening socket must be closed once the threads stop"
        );
    }
}
