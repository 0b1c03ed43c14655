//! The HTTP API: parses each request into a typed call on a control-plane service (the
//! lifecycle, images, tokens) and turns the outcome into JSON. It holds no state of its own
//! and never reaches the node or the store.

mod code;
mod containers;
mod deployments;
mod exec;
mod exec_tty;
mod files;
mod images;
mod logs;
mod metrics;
mod nodes;
pub(crate) mod response;
mod secrets;
mod state;
mod tokens;
mod volumes;

pub use state::AppState;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use berth_api::{
    ApiError, Container, ContainerList, CreateContainerRequest, ErrorCode, Health, StopRequest,
};
use utoipa::OpenApi;

use crate::node::Node;
use response::Failure;

/// Request bodies larger than this are refused before parsing.
const MAX_BODY_BYTES: usize = 1024 * 1024;

pub fn router<N: Node>(state: Arc<AppState<N>>) -> Router {
    let authed = Router::new()
        .route(
            "/v1/containers",
            post(containers::create::<N>).get(containers::list::<N>),
        )
        .route("/v1/containers/{id}", get(containers::fetch::<N>))
        .route("/v1/containers/{id}/stop", post(containers::stop::<N>))
        .route("/v1/containers/{id}/logs", get(logs::logs::<N>))
        .route("/v1/containers/{id}/exec", post(exec::exec::<N>))
        .route("/v1/containers/{id}/exec/tty", get(exec_tty::exec_tty::<N>))
        .route(
            "/v1/containers/{id}/files",
            get(files::download::<N>).put(files::upload::<N>).layer(
                axum::extract::DefaultBodyLimit::max(
                    usize::try_from(berth_api::MAX_FILE_BYTES).unwrap_or(usize::MAX),
                ),
            ),
        )
        .route("/v1/containers/{id}/files/list", get(files::list::<N>))
        .route(
            "/v1/containers/{id}/files/mkdir",
            post(files::make_dir::<N>),
        )
        .route(
            "/v1/containers/{id}/tokens",
            post(tokens::create::<N>).get(tokens::list::<N>),
        )
        .route(
            "/v1/containers/{id}/tokens/{token_id}",
            delete(tokens::revoke::<N>),
        )
        .route("/v1/images", get(images::list::<N>))
        .route("/v1/images/build", post(images::build::<N>))
        .route("/v1/images/prune", post(images::prune::<N>))
        .route(
            "/v1/code/{digest}",
            put(code::upload::<N>).head(code::exists::<N>).layer(
                axum::extract::DefaultBodyLimit::max(
                    usize::try_from(state.max_code_bytes).unwrap_or(usize::MAX),
                ),
            ),
        )
        .route("/v1/nodes", get(nodes::list::<N>))
        .route("/v1/nodes/join-tokens", post(nodes::create_join_token::<N>))
        .route("/v1/nodes/{id}", delete(nodes::delete::<N>))
        .route("/v1/volumes", get(volumes::list::<N>))
        .route("/v1/volumes/{name}", delete(volumes::delete::<N>))
        .route("/v1/secrets", get(secrets::list::<N>))
        .route(
            "/v1/secrets/{name}",
            put(secrets::put::<N>).delete(secrets::delete::<N>),
        )
        .route(
            "/v1/deployments",
            post(deployments::deploy::<N>).get(deployments::list::<N>),
        )
        .route(
            "/v1/deployments/{name}",
            get(deployments::fetch::<N>).delete(deployments::delete::<N>),
        )
        .route("/v1/deployments/{name}/stop", post(deployments::stop::<N>))
        .route("/v1/deployments/{name}/logs", get(deployments::logs::<N>))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::<N>));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(metrics::metrics::<N>))
        .merge(authed)
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn auth<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    req: Request,
    next: Next,
) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Failure(ApiError::new(
            ErrorCode::Unauthenticated,
            "missing bearer token: send Authorization: Bearer <token> (see `berth server` output or BERTH_TOKEN)",
        ))
        .into_response();
    };
    match state.tokens.accepts(token).await {
        Ok(true) => next.run(req).await,
        Ok(false) => Failure(ApiError::new(
            ErrorCode::Unauthenticated,
            "the bearer token is not valid",
        ))
        .into_response(),
        Err(e) => Failure::internal(e).into_response(),
    }
}

async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

#[derive(OpenApi)]
#[openapi(
    info(title = "berth", description = "Serverless containers on machines you own."),
    paths(containers::create, containers::list, containers::fetch, containers::stop, logs::logs,
        images::build, images::list, images::prune, code::exists, code::upload, volumes::list,
        volumes::delete, secrets::put, secrets::list, secrets::delete, deployments::deploy,
        deployments::list, deployments::fetch, deployments::stop, deployments::delete,
        deployments::logs, tokens::create, tokens::list, tokens::revoke, exec::exec, exec_tty::exec_tty,
        files::download, files::upload, files::list, files::make_dir, nodes::list,
        nodes::create_join_token, nodes::delete),
    components(schemas(CreateContainerRequest, Container, ContainerList, StopRequest, ApiError, Health,
        berth_api::ImageSource, berth_api::ImageSpec, berth_api::BuildStep, berth_api::BuildEvent,
        berth_api::ImageList, berth_api::ImageSummary, berth_api::PruneResult,
        berth_api::VolumeMount, berth_api::CodeUploaded, berth_api::Volume, berth_api::VolumeList,
        berth_api::PutSecret, berth_api::Secret, berth_api::SecretList, berth_api::DeployRequest,
        berth_api::DeployResponse, berth_api::Deployment, berth_api::DeploymentList,
        berth_api::DeploymentVersion, berth_api::DeploymentStatus, berth_api::VersionStatus,
        berth_api::CreatePodTokenRequest, berth_api::PodToken, berth_api::PodTokenList,
        berth_api::ExecRequest, berth_api::ExecEvent, berth_api::TtyControl, berth_api::TtySize, berth_api::FileListing,
        berth_api::FileInfo, berth_api::FileKind, berth_api::FileWritten, berth_api::DirMade,
        berth_api::NodeInfo, berth_api::NodeList, berth_api::NodeStatus,
        berth_api::CreateJoinTokenRequest, berth_api::JoinTokenCreated)),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub fn openapi_document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

async fn openapi() -> impl IntoResponse {
    Json(openapi_document())
}

async fn not_found() -> Failure {
    Failure(ApiError::new(
        ErrorCode::NotFound,
        "no such API route; see /openapi.json",
    ))
}
