//! One request's record: the access log line and the pod's byte count, written when the
//! response body ends (streams and downloads included), and for HTTP/2 the hold on the pod's
//! keep-warm that lasts exactly as long as the response does.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::{Response, StatusCode};

use crate::response::Body;
use crate::{ActivityGuard, ProxyMetrics};

pub(crate) struct Exchange {
    started: Instant,
    host: String,
    method: hyper::Method,
    status: StatusCode,
    pub container_id: Option<String>,
    /// Held until the response body ends (set for HTTP/2, whose connections outlive requests).
    pub hold: Option<ActivityGuard>,
    metrics: Arc<ProxyMetrics>,
}

impl Exchange {
    pub(crate) fn new(host: &str, method: hyper::Method, metrics: Arc<ProxyMetrics>) -> Self {
        Self {
            started: Instant::now(),
            host: host[..floor_char_boundary(host, 256)].to_string(),
            method,
            status: StatusCode::OK,
            container_id: None,
            hold: None,
            metrics,
        }
    }

    /// The response head came back from the pod.
    pub(crate) fn answered(&self) {
        if let Some(id) = &self.container_id {
            self.metrics.record_head(id, self.started.elapsed());
        }
    }

    /// Wraps the response body so the record is written when it ends.
    pub(crate) fn finish(mut self, resp: Response<Body>) -> Response<Body> {
        self.status = resp.status();
        resp.map(|inner| {
            Tracked {
                inner,
                bytes: 0,
                exchange: Some(self),
            }
            .boxed()
        })
    }
}

/// The longest prefix of `s` at most `max` bytes long that ends on a character boundary.
fn floor_char_boundary(s: &str, max: usize) -> usize {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

struct Tracked {
    inner: Body,
    bytes: u64,
    exchange: Option<Exchange>,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.bytes += data.len() as u64;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let Some(exchange) = self.exchange.take() else {
            return;
        };
        let container = exchange.container_id.as_deref().unwrap_or("-");
        if let Some(id) = &exchange.container_id {
            exchange.metrics.record_bytes(id, self.bytes);
        }
        tracing::info!(
            target: "berth::access",
            host = %exchange.host,
            method = %exchange.method,
            status = exchange.status.as_u16(),
            bytes = self.bytes,
            ms = exchange.started.elapsed().as_millis() as u64,
            container = container,
            "request"
        );
    }
}
