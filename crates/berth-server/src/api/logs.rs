//! `GET /v1/containers/{id}/logs`: the container's log lines, optionally followed until the
//! container ends.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use berth_api::ApiError;
use futures_util::{StreamExt, TryStreamExt};
use serde::Deserialize;

use super::response::{body_response, Failure};
use super::state::AppState;
use crate::node::{LogStream, Node};

#[derive(Deserialize)]
pub struct LogsQuery {
    #[serde(default)]
    pub follow: bool,
}

/// Log lines are `<RFC 3339 time> <stdout|stderr> <text>`.
#[utoipa::path(get, path = "/v1/containers/{id}/logs",
    params(("follow" = Option<bool>, Query, description = "keep streaming until the container ends")),
    responses((status = 200, content_type = "text/plain", body = String), (status = 404, body = ApiError),
        (status = 500, body = ApiError)),
    security(("bearer" = [])))]
pub async fn logs<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, Failure> {
    let stream = state.lifecycle.logs(&id, q.follow).await?;
    log_response(stream, q.follow).await
}

/// A log as a response body: streamed when followed, else read whole first.
pub async fn log_response(mut stream: LogStream, follow: bool) -> Result<Response, Failure> {
    let body = if follow {
        // Bytes go out as they come; a read error ends the body early.
        Body::from_stream(stream.map_err(std::io::Error::other))
    } else {
        // Read whole before answering, so a read error is a clear 500, not a short log.
        let mut text = Vec::new();
        while let Some(chunk) = stream.next().await {
            text.extend_from_slice(&chunk?);
        }
        Body::from(text)
    };
    Ok(body_response(
        StatusCode::OK,
        "text/plain; charset=utf-8",
        body,
    ))
}
