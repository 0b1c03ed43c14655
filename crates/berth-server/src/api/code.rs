//! `/v1/code/{digest}`: uploads of the synced working directory, content-addressed so a
//! client skips the upload when the server already has it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use berth_api::{ApiError, CodeUploaded, ErrorCode};

use super::response::Failure;
use super::state::AppState;
use crate::node::{Node, NodeError};
use crate::spec::valid_digest;
use crate::storage::StorageError;

fn checked(digest: &str) -> Result<(), Failure> {
    if valid_digest(digest) {
        Ok(())
    } else {
        Err(Failure(ApiError::invalid(
            "digest",
            format!("{digest:?} is not sha256:<64 lower-case hex digits>"),
        )))
    }
}

/// 200 if the server holds the archive, 404 if it must be uploaded.
#[utoipa::path(head, path = "/v1/code/{digest}", responses((status = 200), (status = 404)),
    security(("bearer" = [])))]
pub async fn exists<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    Path(digest): Path<String>,
) -> Result<StatusCode, Failure> {
    checked(&digest)?;
    Ok(if state.storage.has_code(&digest) {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    })
}

/// The body is a gzip'd tar of the directory; its sha256 must be the digest. Refused with
/// 400 if it holds anything but files, directories and symlinks that stay inside, 413 past
/// the server's size cap.
#[utoipa::path(put, path = "/v1/code/{digest}", request_body(content = Vec<u8>, content_type = "application/gzip"),
    responses((status = 201, body = CodeUploaded), (status = 400, body = ApiError), (status = 413, body = ApiError)),
    security(("bearer" = [])))]
pub async fn upload<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    Path(digest): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<CodeUploaded>), Failure> {
    checked(&digest)?;
    match state.storage.put_code(digest, body).await {
        Ok(uploaded) => Ok((StatusCode::CREATED, Json(uploaded))),
        Err(StorageError::Node(NodeError::Code(e))) if e.is_client_error() => {
            let code = match e {
                crate::node::CodeError::TooLarge { .. } => ErrorCode::PayloadTooLarge,
                _ => ErrorCode::InvalidArgument,
            };
            Err(Failure(ApiError::new(code, e.to_string())))
        }
        Err(e) => Err(Failure::internal(e)),
    }
}
