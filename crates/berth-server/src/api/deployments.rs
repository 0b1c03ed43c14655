//! `/v1/deployments`: deploy a version, list, inspect, stop, delete, read logs.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use berth_api::{ApiError, DeployRequest, DeployResponse, Deployment, DeploymentList, ErrorCode};

use super::logs::{log_response, LogsQuery};
use super::response::{parse_body, Failure};
use super::state::AppState;
use crate::deployments::DeployError;
use crate::node::Node;

impl From<DeployError> for Failure {
    fn from(e: DeployError) -> Self {
        match e {
            DeployError::Invalid(api) => Failure(api),
            DeployError::NotFound(_) => Failure(ApiError::new(ErrorCode::NotFound, e.to_string())),
            DeployError::Lifecycle(e) => e.into(),
            DeployError::Store(e) => Failure::internal(e),
        }
    }
}

/// Adds a version: its container starts now and takes over the deployment's URL once its
/// port accepts connections; until then the previous version keeps serving.
#[utoipa::path(post, path = "/v1/deployments", request_body = DeployRequest,
    responses((status = 202, body = DeployResponse), (status = 400, body = ApiError)),
    security(("bearer" = [])))]
pub async fn deploy<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    body: Bytes,
) -> Result<(StatusCode, Json<DeployResponse>), Failure> {
    let req: DeployRequest = parse_body(&body)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(state.deployments.deploy(req).await?),
    ))
}

#[utoipa::path(get, path = "/v1/deployments", responses((status = 200, body = DeploymentList)),
    security(("bearer" = [])))]
pub async fn list<N: Node>(
    State(state): State<Arc<AppState<N>>>,
) -> Result<Json<DeploymentList>, Failure> {
    Ok(Json(DeploymentList {
        deployments: state.deployments.list().await?,
    }))
}

#[utoipa::path(get, path = "/v1/deployments/{name}",
    responses((status = 200, body = Deployment), (status = 404, body = ApiError)), security(("bearer" = [])))]
pub async fn fetch<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    Path(name): Path<String>,
) -> Result<Json<Deployment>, Failure> {
    state
        .deployments
        .get(&name)
        .await?
        .map(Json)
        .ok_or_else(|| DeployError::NotFound(name).into())
}

/// Stops its containers; requests get 404 until the next deploy.
#[utoipa::path(post, path = "/v1/deployments/{name}/stop",
    responses((status = 200, body = Deployment), (status = 404, body = ApiError)), security(("bearer" = [])))]
pub async fn stop<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    Path(name): Path<String>,
) -> Result<Json<Deployment>, Failure> {
    Ok(Json(state.deployments.stop(&name).await?))
}

#[utoipa::path(delete, path = "/v1/deployments/{name}",
    responses((status = 204), (status = 404, body = ApiError)), security(("bearer" = [])))]
pub async fn delete<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    Path(name): Path<String>,
) -> Result<StatusCode, Failure> {
    state.deployments.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The log of the deployment's newest container.
#[utoipa::path(get, path = "/v1/deployments/{name}/logs",
    params(("follow" = Option<bool>, Query, description = "keep streaming until the container ends")),
    responses((status = 200, content_type = "text/plain", body = String), (status = 404, body = ApiError)),
    security(("bearer" = [])))]
pub async fn logs<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, Failure> {
    let stream = state.deployments.logs(&name, q.follow).await?;
    log_response(stream, q.follow).await
}
