//! Route phase: the request's host → the pod route serving it. A pod host without a route
//! asks the [`RouteMiss`] hook (wake-on-request starts the pod there) before it becomes a 404.

use futures_util::future::BoxFuture;
use hyper::header::HOST;
use hyper::Request;

use crate::ingress::Ingress;
use crate::{parse_pod_host, PodHost, Route};

/// Asked when a request names a pod host (`<stub-id>-<port>.<domain>`) but the route table
/// has no container serving it, e.g. because the stub's pod is stopped.
///
/// The request waits for the answer (see [`MissOutcome`]). Concurrent requests for the same
/// stub each call the hook, so an implementation that starts pods must coalesce them itself.
pub trait RouteMiss: Send + Sync + 'static {
    fn route_miss<'a>(&'a self, pod: &'a PodHost) -> BoxFuture<'a, MissOutcome>;
}

/// What the route-miss hook found.
#[derive(Debug, Clone)]
pub enum MissOutcome {
    /// Used for this request as if the table had held it (the hook should also insert it in
    /// the table, so later requests skip the hook); it must serve `pod.port`.
    Route(std::sync::Arc<Route>),
    /// Nothing serves this host: the usual 404.
    NotFound,
    /// Something will serve it, but not within the hook's limit: 503 with `Retry-After`.
    Unavailable {
        message: String,
        retry_after_seconds: u32,
    },
}

/// Where a request goes.
pub(crate) struct Target {
    pub host: String,
    pub pod: PodHost,
    pub route: std::sync::Arc<Route>,
    /// For a path-style URL, the `/pod/<stub-id>/<port>` the pod does not see.
    pub prefix: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum RouteError {
    #[error("malformed Host header {host:?}")]
    BadHost { host: String },
    #[error("no pod is served at host {host:?}; pod URLs look like <stub-id>-<port>.{domain}")]
    NotAPodHost { host: String, domain: String },
    #[error("no pod is served at {path:?}; path-style pod URLs look like /pod/<stub-id>/<port>/")]
    NotAPodPath { path: String },
    #[error("no running pod serves port {port} of stub {stub_id}")]
    NoRoute { stub_id: String, port: u16 },
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after_seconds: u32,
    },
}

/// The host a request names: its `Host` header, or the authority of an HTTP/2 request.
pub(crate) fn request_host<B>(req: &Request<B>) -> &str {
    req.headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("")
}

/// A host header is a DNS name or an IP literal with an optional port, nothing else.
fn well_formed(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 260
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

/// `/pod/<stub-id>/<port>` and `/pod/<stub-id>/<port>/...`: the pod and the prefix.
fn path_style(path: &str) -> Option<(PodHost, String)> {
    let rest = path.strip_prefix("/pod/")?;
    let mut parts = rest.splitn(3, '/');
    let stub_id = parts.next()?.to_ascii_lowercase();
    let port: u16 = parts.next()?.parse().ok().filter(|p| *p > 0)?;
    if stub_id.is_empty()
        || !stub_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return None;
    }
    let prefix = format!("/pod/{stub_id}/{port}");
    Some((PodHost { stub_id, port }, prefix))
}

/// Takes the path-style prefix off the request's target: `/pod/s/80/a?b` → `/a?b`.
pub(crate) fn strip_prefix<B>(req: &mut Request<B>, prefix: &str) {
    let Some(target) = req.uri().path_and_query().map(|p| p.as_str().to_string()) else {
        return;
    };
    // Matched case-insensitively on the stub id: cut by length, not by text.
    let rest = target.get(prefix.len()..).unwrap_or("");
    let rest = if rest.starts_with('/') {
        rest.to_string()
    } else {
        format!("/{rest}")
    };
    if let Ok(uri) = rest.parse() {
        *req.uri_mut() = uri;
    }
}

/// Finds the route for a request's host (or, on the bare domain, its path-style prefix),
/// asking the route-miss hook when no pod serves it right now.
pub(crate) async fn route<B>(ingress: &Ingress, req: &Request<B>) -> Result<Target, RouteError> {
    let host = request_host(req).to_string();
    if !well_formed(&host) {
        return Err(RouteError::BadHost { host });
    }
    let (pod, prefix) = match parse_pod_host(&host, &ingress.domain) {
        Some(pod) => (pod, None),
        None if crate::host::is_domain(&host, &ingress.domain) => {
            match path_style(req.uri().path()) {
                Some((pod, prefix)) => (pod, Some(prefix)),
                None => {
                    return Err(RouteError::NotAPodPath {
                        path: req.uri().path().to_string(),
                    })
                }
            }
        }
        None => {
            return Err(RouteError::NotAPodHost {
                host,
                domain: ingress.domain.clone(),
            })
        }
    };
    let outcome = match ingress.routes.lookup(&pod.stub_id, pod.port) {
        Some(route) => MissOutcome::Route(route),
        None => match &ingress.route_miss {
            Some(hook) => ask(hook, &pod).await,
            None => MissOutcome::NotFound,
        },
    };
    match outcome {
        MissOutcome::Route(route) => Ok(Target {
            host,
            pod,
            route,
            prefix,
        }),
        MissOutcome::NotFound => Err(RouteError::NoRoute {
            stub_id: pod.stub_id,
            port: pod.port,
        }),
        MissOutcome::Unavailable {
            message,
            retry_after_seconds,
        } => Err(RouteError::Unavailable {
            message,
            retry_after_seconds,
        }),
    }
}

/// Runs the hook on the runtime that installed it (the server's), not on an ingress thread:
/// starting a pod is the server's work, and must not end with an ingress thread.
async fn ask(hook: &RouteMissHook, pod: &PodHost) -> MissOutcome {
    let Some(runtime) = &hook.runtime else {
        return hook.hook.route_miss(pod).await;
    };
    let (hook, pod) = (hook.hook.clone(), pod.clone());
    runtime
        .spawn(async move { hook.route_miss(&pod).await })
        .await
        .unwrap_or_else(|e| MissOutcome::Unavailable {
            message: format!("starting the pod failed: {e}"),
            retry_after_seconds: 5,
        })
}

/// The hook, and the runtime it was installed from.
pub(crate) struct RouteMissHook {
    pub hook: std::sync::Arc<dyn RouteMiss>,
    pub runtime: Option<tokio::runtime::Handle>,
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex};

    use tokio::net::TcpStream;

    use super::*;
    use crate::testing::{request, route, serve_on_loopback, upstream};
    use crate::{ProxyMetrics, RouteTable};

    /// Answers every miss with `outcome`, recording the hosts it was asked about.
    struct Hook {
        outcome: MissOutcome,
        asked: Mutex<Vec<PodHost>>,
    }

    impl RouteMiss for Hook {
        fn route_miss<'a>(&'a self, pod: &'a PodHost) -> BoxFuture<'a, MissOutcome> {
            Box::pin(async move {
                self.asked
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(pod.clone());
                tokio::task::yield_now().await;
                self.outcome.clone()
            })
        }
    }

    async fn start_with(hook: Arc<Hook>) -> (std::net::SocketAddr, Arc<ProxyMetrics>) {
        let metrics = Arc::new(ProxyMetrics::default());
        let ingress = Ingress::new("pods.test", Arc::new(RouteTable::new()), metrics.clone())
            .with_route_miss(hook);
        (serve_on_loopback(ingress).await, metrics)
    }

    #[tokio::test]
    async fn a_route_from_the_miss_hook_serves_the_request() {
        let port = upstream().await;
        let (woken, activity) = route("pod-stub-1", port);
        let hook = Arc::new(Hook {
            outcome: MissOutcome::Route(Arc::new(woken)),
            asked: Mutex::default(),
        });
        let (addr, metrics) = start_with(hook.clone()).await;
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        let (status, body) = request(&mut conn, &format!("stub-{port}.pods.test"), "/up").await;
        assert_eq!(
            (status, body.as_str()),
            (200, "GET /up HTTP/1.1 xff=127.0.0.1")
        );
        assert_eq!(activity.open_connections(), 1);
        assert_eq!(metrics.not_found.load(Ordering::Relaxed), 0);
        let asked = hook.asked.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(
            asked,
            vec![PodHost {
                stub_id: "stub".into(),
                port
            }]
        );
    }

    #[tokio::test]
    async fn a_miss_hook_without_a_route_leaves_the_404() {
        let hook = Arc::new(Hook {
            outcome: MissOutcome::NotFound,
            asked: Mutex::default(),
        });
        let (addr, metrics) = start_with(hook.clone()).await;
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        let (status, body) = request(&mut conn, "abc-80.pods.test", "/").await;
        assert_eq!(status, 404);
        assert_eq!(body, "no running pod serves port 80 of stub abc\n");
        // Hosts that are not pod hosts never reach the hook.
        let (status, _) = request(&mut conn, "example.com", "/").await;
        assert_eq!(status, 404);
        assert_eq!(metrics.not_found.load(Ordering::Relaxed), 2);
        let asked = hook.asked.lock().unwrap_or_else(|p| p.into_inner()).len();
        assert_eq!(asked, 1);
    }

    #[tokio::test]
    async fn a_pod_that_cannot_start_in_time_gets_503_with_retry_after() {
        let hook = Arc::new(Hook {
            outcome: MissOutcome::Unavailable {
                message: "deployment web is still starting".into(),
                retry_after_seconds: 7,
            },
            asked: Mutex::default(),
        });
        let (addr, _) = start_with(hook).await;
        let mut conn = TcpStream::connect(addr).await.expect("connect");
        let head = crate::testing::raw_request(&mut conn, "web-80.pods.test", "/").await;
        assert!(head.starts_with("HTTP/1.1 503"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains("retry-after: 7"),
            "{head}"
        );
        assert!(head.contains("deployment web is still starting"), "{head}");
    }
}
