//! `GET /v1/containers/{id}/logs`: the container's log lines, optionally followed until the
//! container ends.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use berth_api::{ApiError, ErrorCode};
use serde::Deserialize;
use tokio::io::AsyncReadExt;

use crate::api::{body_response, AppState, Failure};
use crate::node::Node;

#[derive(Deserialize)]
pub struct LogsQuery {
    #[serde(default)]
    follow: bool,
}

/// Log lines are `<RFC 3339 time> <stdout|stderr> <text>`.
#[utoipa::path(get, path = "/v1/containers/{id}/logs",
    params(("follow" = Option<bool>, Query, description = "keep streaming until the container ends")),
    responses((status = 200, content_type = "text/plain", body = String), (status = 404, body = ApiError)),
    security(("bearer" = [])))]
pub async fn logs<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    Path(id): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, Failure> {
    let lifecycle = state.lifecycle.clone();
    if lifecycle.get(&id).await?.is_none() {
        return Err(Failure(ApiError::new(
            ErrorCode::NotFound,
            format!("no container {id}"),
        )));
    }
    let path = lifecycle.node().log_path(&id);
    if !q.follow {
        let text = tokio::fs::read(&path).await.unwrap_or_default();
        return Ok(body_response(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            Body::from(text),
        ));
    }
    // Follow: send what is there, then poll for more until the container ended and the file
    // has nothing new.
    let stream = futures_util::stream::unfold((0u64, false), move |(offset, done)| {
        let path = path.clone();
        let lifecycle = lifecycle.clone();
        let id = id.clone();
        async move {
            if done {
                return None;
            }
            loop {
                let chunk = read_from(&path, offset).await;
                if !chunk.is_empty() {
                    let next = offset + chunk.len() as u64;
                    return Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), (next, false)));
                }
                let ended = match lifecycle.get(&id).await {
                    Ok(Some(c)) => c.status.is_terminal(),
                    _ => true,
                };
                if ended {
                    // One last read: the shim may have flushed while we checked.
                    let tail = read_from(&path, offset).await;
                    return Some((Ok(Bytes::from(tail)), (offset, true)));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    Ok(body_response(
        StatusCode::OK,
        "text/plain; charset=utf-8",
        Body::from_stream(stream),
    ))
}

async fn read_from(path: &std::path::Path, offset: u64) -> Vec<u8> {
    let Ok(mut file) = tokio::fs::File::open(path).await else {
        return Vec::new();
    };
    use tokio::io::AsyncSeekExt;
    if file.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    let _ = file.read_to_end(&mut buf).await;
    buf
}
