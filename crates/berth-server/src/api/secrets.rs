//! `/v1/secrets`: values go in, names come out; no call returns a value.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use berth_api::{ApiError, ErrorCode, PutSecret, Secret, SecretList};

use super::response::{parse_body, Failure};
use super::state::AppState;
use crate::node::Node;
use crate::secrets::{SecretError, Secrets};

impl From<SecretError> for Failure {
    fn from(e: SecretError) -> Self {
        let code = match &e {
            SecretError::Missing(_) => ErrorCode::NotFound,
            _ => ErrorCode::Internal,
        };
        Failure(ApiError::new(code, e.to_string()))
    }
}

/// Creates or replaces a secret.
#[utoipa::path(put, path = "/v1/secrets/{name}", request_body = PutSecret,
    responses((status = 201, body = Secret), (status = 400, body = ApiError)), security(("bearer" = [])))]
pub async fn put<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Secret>), Failure> {
    let req: PutSecret = parse_body(&body)?;
    Secrets::validate(&name, &req.value).map_err(Failure)?;
    Ok((
        StatusCode::CREATED,
        Json(state.secrets.put(&name, &req.value).await?),
    ))
}

#[utoipa::path(get, path = "/v1/secrets", responses((status = 200, body = SecretList)),
    security(("bearer" = [])))]
pub async fn list<N: Node>(
    State(state): State<Arc<AppState<N>>>,
) -> Result<Json<SecretList>, Failure> {
    Ok(Json(SecretList {
        secrets: state.secrets.list().await?,
    }))
}

#[utoipa::path(delete, path = "/v1/secrets/{name}",
    responses((status = 204), (status = 404, body = ApiError)), security(("bearer" = [])))]
pub async fn delete<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    Path(name): Path<String>,
) -> Result<StatusCode, Failure> {
    if state.secrets.delete(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(SecretError::Missing(name).into())
    }
}
