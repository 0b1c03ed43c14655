//! `/v1/volumes`: named directories that outlive pods.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use berth_api::{ApiError, ErrorCode, VolumeList};

use super::response::Failure;
use super::state::AppState;
use crate::node::Node;
use crate::storage::StorageError;

impl From<StorageError> for Failure {
    fn from(e: StorageError) -> Self {
        let code = match &e {
            StorageError::NoVolume(_) => ErrorCode::NotFound,
            StorageError::InUse { .. } => ErrorCode::Conflict,
            StorageError::Node(crate::node::NodeError::Plan(_)) => ErrorCode::InvalidArgument,
            _ => ErrorCode::Internal,
        };
        Failure(ApiError::new(code, e.to_string()))
    }
}

#[utoipa::path(get, path = "/v1/volumes", responses((status = 200, body = VolumeList)),
    security(("bearer" = [])))]
pub async fn list<N: Node>(
    State(state): State<Arc<AppState<N>>>,
) -> Result<Json<VolumeList>, Failure> {
    Ok(Json(VolumeList {
        volumes: state.storage.volumes().await?,
    }))
}

/// Deletes the volume and its files; 409 while a pod uses it.
#[utoipa::path(delete, path = "/v1/volumes/{name}",
    responses((status = 204), (status = 404, body = ApiError), (status = 409, body = ApiError)),
    security(("bearer" = [])))]
pub async fn delete<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    Path(name): Path<String>,
) -> Result<StatusCode, Failure> {
    state.storage.delete_volume(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
