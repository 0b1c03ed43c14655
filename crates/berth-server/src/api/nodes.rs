//! `/v1/nodes`: the machines that run pods, with what their pods ask for, and the tokens
//! that let more join.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use berth_api::{ApiError, CreateJoinTokenRequest, ErrorCode, JoinTokenCreated, NodeList};

use super::response::{parse_body, Failure};
use super::state::AppState;
use crate::cluster::ClusterError;
use crate::node::Node;
use crate::nodes::NodesError;

#[utoipa::path(get, path = "/v1/nodes", responses((status = 200, body = NodeList)),
    security(("bearer" = [])))]
pub async fn list<N: Node>(
    State(state): State<Arc<AppState<N>>>,
) -> Result<Json<NodeList>, Failure> {
    let nodes = state.nodes.list().await.map_err(Failure::internal)?;
    Ok(Json(NodeList { nodes }))
}

/// Forgets a node that left and revokes its certificate; 409 for the server's own node and
/// for one with containers that have not ended.
#[utoipa::path(delete, path = "/v1/nodes/{id}",
    responses((status = 204), (status = 404, body = ApiError), (status = 409, body = ApiError)),
    security(("bearer" = [])))]
pub async fn delete<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    Path(id): Path<String>,
) -> Result<StatusCode, Failure> {
    match state.nodes.delete(&id).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(e @ NodesError::NoNode(_)) => {
            Err(Failure(ApiError::new(ErrorCode::NotFound, e.to_string())))
        }
        Err(e @ (NodesError::Own(_) | NodesError::Busy { .. })) => {
            Err(Failure(ApiError::new(ErrorCode::Conflict, e.to_string())))
        }
        Err(e) => Err(Failure::internal(e)),
    }
}

#[utoipa::path(post, path = "/v1/nodes/join-tokens", request_body = Option<CreateJoinTokenRequest>,
    responses((status = 201, body = JoinTokenCreated), (status = 400, body = ApiError),
        (status = 409, body = ApiError)),
    security(("bearer" = [])))]
pub async fn create_join_token<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    body: Bytes,
) -> Result<(StatusCode, Json<JoinTokenCreated>), Failure> {
    let req: CreateJoinTokenRequest = if body.is_empty() {
        CreateJoinTokenRequest::default()
    } else {
        parse_body(&body)?
    };
    let cluster = state.cluster.as_ref().ok_or_else(|| {
        Failure(ApiError::new(
            ErrorCode::Conflict,
            "this server takes no workers: start it with --node-listen ADDR:PORT",
        ))
    })?;
    match cluster.mint_token(req.ttl_seconds).await {
        Ok(created) => Ok((StatusCode::CREATED, Json(created))),
        Err(e @ ClusterError::Ttl) => Err(Failure(ApiError::invalid("ttl_seconds", e))),
        Err(e) => Err(Failure::internal(e)),
    }
}
