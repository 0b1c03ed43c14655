//! Route phase: the request's host → the pod route serving it. A pod host without a route
//! asks the [`RouteMiss`] hook (wake-on-request starts the pod there) before it becomes a 404.

use futures_util::future::BoxFuture;
use hyper::body::Incoming;
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
    Route(Route),
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
    /// The host as the client sent it, for `X-Forwarded-Host`.
    pub host: String,
    pub pod: PodHost,
    pub route: Route,
}

/// The host does not lead to a pod (the client's side of a 404).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RouteError {
    #[error("no pod is served at host {host:?}; pod URLs look like <stub-id>-<port>.{domain}")]
    NotAPodHost { host: String, domain: String },
    #[error("no running pod serves port {port} of stub {stub_id}")]
    NoRoute { stub_id: String, port: u16 },
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after_seconds: u32,
    },
}

pub(crate) async fn route(
    ingress: &Ingress,
    req: &Request<Incoming>,
) -> Result<Target, RouteError> {
    // HTTP/1.1 clients send Host; an absolute-form request line carries it in the URI.
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("")
        .to_string();
    let Some(pod) = parse_pod_host(&host, &ingress.domain) else {
        return Err(RouteError::NotAPodHost {
            host,
            domain: ingress.domain.clone(),
        });
    };
    let outcome = match ingress.routes.lookup(&pod.stub_id, pod.port) {
        Some(route) => MissOutcome::Route(route),
        None => match &ingress.route_miss {
            Some(hook) => hook.route_miss(&pod).await,
            None => MissOutcome::NotFound,
        },
    };
    match outcome {
        MissOutcome::Route(route) => Ok(Target { host, pod, route }),
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
            outcome: MissOutcome::Route(woken),
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
