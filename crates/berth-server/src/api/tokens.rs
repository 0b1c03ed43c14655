//! `/v1/containers/{id}/tokens`: scoped tokens that open one port of an authorized pod.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use berth_api::{
    ApiError, Container, CreatePodTokenRequest, ErrorCode, PodToken, PodTokenList,
    MAX_POD_TOKEN_TTL_SECONDS,
};

use super::response::{parse_body, Failure};
use super::state::AppState;
use crate::node::Node;
use crate::store::PodTokenRow;

#[utoipa::path(post, path = "/v1/containers/{id}/tokens", request_body = CreatePodTokenRequest,
    responses((status = 201, body = PodToken), (status = 400, body = ApiError), (status = 404, body = ApiError)),
    security(("bearer" = [])))]
pub async fn create<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<PodToken>), Failure> {
    let req: CreatePodTokenRequest = parse_body(&body)?;
    let container = container(&state, &id).await?;
    if !container.authorized {
        return Err(Failure(ApiError::invalid(
            "authorized",
            format!("container {id} was not created with authorized, so its URLs need no token"),
        )));
    }
    let port = u16::try_from(req.port)
        .ok()
        .filter(|p| container.ports.contains(p))
        .ok_or_else(|| {
            Failure(ApiError::invalid(
                "port",
                format!(
                    "container {id} exposes {:?}, not port {}",
                    container.ports, req.port
                ),
            ))
        })?;
    if !(1..=MAX_POD_TOKEN_TTL_SECONDS).contains(&req.ttl_seconds) {
        return Err(Failure(ApiError::invalid(
            "ttl_seconds",
            format!(
                "{} is outside 1 to {MAX_POD_TOKEN_TTL_SECONDS} seconds (30 days)",
                req.ttl_seconds
            ),
        )));
    }
    let minted = state
        .access
        .mint(&id, port, Duration::from_secs(req.ttl_seconds))
        .await
        .map_err(Failure::internal)?;
    let mut token = view(&state, &container, minted.row);
    token.token = Some(minted.token);
    Ok((StatusCode::CREATED, Json(token)))
}

#[utoipa::path(get, path = "/v1/containers/{id}/tokens",
    responses((status = 200, body = PodTokenList), (status = 404, body = ApiError)), security(("bearer" = [])))]
pub async fn list<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    Path(id): Path<String>,
) -> Result<Json<PodTokenList>, Failure> {
    let container = container(&state, &id).await?;
    let tokens = state
        .access
        .list(&id)
        .into_iter()
        .map(|row| view(&state, &container, row))
        .collect();
    Ok(Json(PodTokenList { tokens }))
}

#[utoipa::path(delete, path = "/v1/containers/{id}/tokens/{token_id}",
    responses((status = 204), (status = 404, body = ApiError)), security(("bearer" = [])))]
pub async fn revoke<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    Path((id, token_id)): Path<(String, String)>,
) -> Result<StatusCode, Failure> {
    if state
        .access
        .revoke(&id, &token_id)
        .await
        .map_err(Failure::internal)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Failure(ApiError::new(
            ErrorCode::NotFound,
            format!("container {id} has no token {token_id}"),
        )))
    }
}

async fn container<N: Node>(state: &AppState<N>, id: &str) -> Result<Container, Failure> {
    state.lifecycle.get(id).await?.ok_or_else(|| {
        Failure(ApiError::new(
            ErrorCode::NotFound,
            format!("no container {id}"),
        ))
    })
}

fn view<N: Node>(state: &AppState<N>, container: &Container, row: PodTokenRow) -> PodToken {
    PodToken {
        url: state.lifecycle.url(&container.stub_id, row.port),
        id: row.id,
        token: None,
        container_id: row.container_id,
        port: row.port,
        expires_at: row.expires_at,
    }
}
