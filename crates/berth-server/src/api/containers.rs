//! `/v1/containers`: create, list, fetch and stop, each a typed call on the lifecycle.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use berth_api::{
    ApiError, Container, ContainerList, CreateContainerRequest, ErrorCode, StopRequest,
};
use serde::Deserialize;

use super::response::{parse_body, Failure};
use super::state::AppState;
use crate::node::Node;
use crate::spec::PodSpec;

#[utoipa::path(post, path = "/v1/containers", request_body = CreateContainerRequest,
    responses((status = 202, body = Container), (status = 400, body = ApiError), (status = 401, body = ApiError)),
    security(("bearer" = [])))]
pub async fn create<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    body: Bytes,
) -> Result<(StatusCode, Json<Container>), Failure> {
    let req: CreateContainerRequest = parse_body(&body)?;
    let spec = PodSpec::validate(req).map_err(Failure)?;
    let container = state.lifecycle.create(spec).await?;
    Ok((StatusCode::ACCEPTED, Json(container)))
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    all: bool,
}

#[utoipa::path(get, path = "/v1/containers", params(("all" = Option<bool>, Query, description = "include ended containers")),
    responses((status = 200, body = ContainerList)), security(("bearer" = [])))]
pub async fn list<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<ContainerList>, Failure> {
    Ok(Json(ContainerList {
        containers: state.lifecycle.list(q.all).await?,
    }))
}

#[utoipa::path(get, path = "/v1/containers/{id}", responses((status = 200, body = Container), (status = 404, body = ApiError)),
    security(("bearer" = [])))]
pub async fn fetch<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    Path(id): Path<String>,
) -> Result<Json<Container>, Failure> {
    state.lifecycle.get(&id).await?.map(Json).ok_or_else(|| {
        Failure(ApiError::new(
            ErrorCode::NotFound,
            format!("no container {id}"),
        ))
    })
}

#[utoipa::path(post, path = "/v1/containers/{id}/stop", request_body = Option<StopRequest>,
    responses((status = 200, body = Container), (status = 404, body = ApiError)), security(("bearer" = [])))]
pub async fn stop<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Container>, Failure> {
    let req: StopRequest = if body.is_empty() {
        StopRequest::default()
    } else {
        parse_body(&body)?
    };
    if matches!(req.grace_seconds, Some(g) if g > berth_api::MAX_STOP_GRACE_SECONDS) {
        return Err(Failure(ApiError::invalid(
            "grace_seconds",
            format!("must be at most {}", berth_api::MAX_STOP_GRACE_SECONDS),
        )));
    }
    let grace = req.grace_seconds.map(Duration::from_secs);
    Ok(Json(state.lifecycle.stop(&id, grace).await?))
}
