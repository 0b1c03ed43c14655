//! `/v1/nodes`: the machines that run pods, with what their pods ask for.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use berth_api::NodeList;

use super::response::Failure;
use super::state::AppState;
use crate::node::Node;

#[utoipa::path(get, path = "/v1/nodes", responses((status = 200, body = NodeList)),
    security(("bearer" = [])))]
pub async fn list<N: Node>(
    State(state): State<Arc<AppState<N>>>,
) -> Result<Json<NodeList>, Failure> {
    let nodes = state.nodes.list().await.map_err(Failure::internal)?;
    Ok(Json(NodeList { nodes }))
}
