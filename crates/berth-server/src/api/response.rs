//! What every handler shares: the error response, JSON body parsing, and plain bodies.

use axum::body::{Body, Bytes};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use berth_api::{ApiError, ErrorCode};

use crate::lifecycle::LifecycleError;
use crate::node::NodeError;

/// An error response: status from the error class, body `{"error": {"code", "message"}}`.
pub struct Failure(pub ApiError);

impl Failure {
    pub fn internal(message: impl std::fmt::Display) -> Self {
        Failure(ApiError::new(ErrorCode::Internal, message.to_string()))
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.error.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status == StatusCode::TOO_MANY_REQUESTS {
            return (status, [(header::RETRY_AFTER, "1")], Json(self.0)).into_response();
        }
        (status, Json(self.0)).into_response()
    }
}

impl From<LifecycleError> for Failure {
    fn from(e: LifecycleError) -> Self {
        let code = match &e {
            LifecycleError::NotFound(_) => ErrorCode::NotFound,
            LifecycleError::Invalid(api) => return Failure(api.clone()),
            LifecycleError::Illegal { .. } | LifecycleError::NotRunning { .. } => {
                ErrorCode::Conflict
            }
            LifecycleError::Node(node) => node_error_code(node),
            LifecycleError::Store(_) => ErrorCode::Internal,
            LifecycleError::Busy { .. } => ErrorCode::TooManyRequests,
            LifecycleError::Unplaceable(_) => ErrorCode::Conflict,
        };
        Failure(ApiError::new(code, e.to_string()))
    }
}

/// The node's errors that are the caller's to fix (a file path in a pod, an upload).
fn node_error_code(e: &NodeError) -> ErrorCode {
    use berth_runtime::PodFilesError as Files;
    match e {
        NodeError::Files(Files::NotFound(_)) => ErrorCode::NotFound,
        NodeError::Files(
            Files::Invalid { .. }
            | Files::IsDirectory(_)
            | Files::NotAFile(_)
            | Files::NotADirectory(_)
            | Files::Unreachable { .. }
            | Files::ReadOnly(_),
        )
        | NodeError::Upload(_) => ErrorCode::InvalidArgument,
        NodeError::FileTooLarge { .. } => ErrorCode::PayloadTooLarge,
        NodeError::NotOnWorkers { .. } => ErrorCode::Conflict,
        _ => ErrorCode::Internal,
    }
}

impl From<NodeError> for Failure {
    fn from(e: NodeError) -> Self {
        Failure::internal(e)
    }
}

/// Parses a JSON body, naming what is wrong with it.
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Failure> {
    if body.is_empty() {
        return Err(Failure(ApiError::invalid(
            "body",
            "is empty; send a JSON object",
        )));
    }
    let mut json = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut json).map_err(|e| {
        // `init: invalid type: ...` rather than a bare line and column.
        let detail = match e.path().to_string().as_str() {
            "." => e.inner().to_string(),
            path => format!("{path}: {}", e.inner()),
        };
        Failure(ApiError::invalid(
            "body",
            format!("not valid JSON for this call: {detail}"),
        ))
    })
}

pub fn body_response(status: StatusCode, content_type: &'static str, body: Body) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[cfg(test)]
mod busy_tests {
    use super::*;

    #[test]
    fn a_full_queue_is_429_with_retry_after() {
        let response = Failure::from(LifecycleError::Busy { limit: 3 }).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response
                .headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
    }
}
