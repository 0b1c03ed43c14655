//! Responses the ingress writes itself: short plain-text bodies a person reading `curl`
//! output understands, with the status chosen by where the failure came from.

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};

use crate::route::RouteError;
use crate::upstream::UpstreamError;

/// The body of every ingress response: the pod's, streamed, or the ingress's own text.
pub(crate) type Body = BoxBody<Bytes, hyper::Error>;

/// Why a request got no answer from a pod, named by the side at fault.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    /// The client asked for a host no pod serves: 404.
    #[error(transparent)]
    Client(#[from] RouteError),
    /// The pod could not be reached or dropped the request: 502.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("pod {container_id} has {limit} open connections, its limit; retry in a moment")]
    Busy { container_id: String, limit: usize },
    #[error("the request body is larger than {limit_mib} MiB, the most this ingress accepts")]
    TooLarge { limit_mib: u64 },
}

impl ProxyError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Client(RouteError::Unavailable { .. }) | Self::Busy { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Client(RouteError::BadHost { .. }) => StatusCode::BAD_REQUEST,
            Self::Client(_) => StatusCode::NOT_FOUND,
            Self::Upstream(UpstreamError::BodyTooLarge) | Self::TooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::Upstream(_) => StatusCode::BAD_GATEWAY,
        }
    }

    pub(crate) fn into_response(self) -> Response<Body> {
        let retry_after = match &self {
            Self::Client(RouteError::Unavailable {
                retry_after_seconds,
                ..
            }) => Some(*retry_after_seconds),
            Self::Busy { .. } => Some(1),
            _ => None,
        };
        let mut resp = text(self.status(), format!("{self}\n"));
        if let Some(seconds) = retry_after {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        resp
    }
}

pub(crate) fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
