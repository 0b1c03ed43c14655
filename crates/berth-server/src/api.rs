//! The HTTP API: parses each request into a typed call on the lifecycle and turns the
//! outcome into JSON. It holds no state of its own.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use berth_api::{
    ApiError, Container, ContainerList, CreateContainerRequest, ErrorCode, Health, StopRequest,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::OpenApi;

use crate::lifecycle::{Lifecycle, LifecycleError};
use crate::node::Node;
use crate::spec::PodSpec;

/// Request bodies larger than this are refused before parsing.
const MAX_BODY_BYTES: usize = 1024 * 1024;

pub struct AppState<N: Node> {
    pub lifecycle: Arc<Lifecycle<N>>,
    pub metrics: Arc<berth_proxy::ProxyMetrics>,
}

pub fn router<N: Node>(state: Arc<AppState<N>>) -> Router {
    let authed = Router::new()
        .route("/v1/containers", post(create::<N>).get(list::<N>))
        .route("/v1/containers/{id}", get(fetch::<N>))
        .route("/v1/containers/{id}/stop", post(stop::<N>))
        .route("/v1/containers/{id}/logs", get(crate::logs::logs::<N>))
        .route("/v1/images", get(crate::images::list::<N>))
        .route("/v1/images/build", post(crate::images::build::<N>))
        .route("/v1/images/prune", post(crate::images::prune::<N>))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::<N>));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(crate::metrics::metrics::<N>))
        .merge(authed)
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// An error response: status from the error class, body `{"error": {"code", "message"}}`.
pub struct Failure(pub ApiError);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.error.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0)).into_response()
    }
}

impl From<LifecycleError> for Failure {
    fn from(e: LifecycleError) -> Self {
        let code = match &e {
            LifecycleError::NotFound(_) => ErrorCode::NotFound,
            LifecycleError::Illegal { .. } => ErrorCode::Conflict,
            LifecycleError::Store(_) => ErrorCode::Internal,
        };
        Failure(ApiError::new(code, e.to_string()))
    }
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
    let digest = hex::encode(Sha256::digest(token.as_bytes()));
    match state.lifecycle.store().token_exists(&digest).await {
        Ok(true) => next.run(req).await,
        Ok(false) => Failure(ApiError::new(
            ErrorCode::Unauthenticated,
            "the bearer token is not valid",
        ))
        .into_response(),
        Err(e) => Failure(ApiError::new(ErrorCode::Internal, e.to_string())).into_response(),
    }
}

/// Parses a JSON body, naming what is wrong with it.
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Failure> {
    if body.is_empty() {
        return Err(Failure(ApiError::invalid(
            "body",
            "is empty; send a JSON object",
        )));
    }
    serde_json::from_slice(body).map_err(|e| {
        Failure(ApiError::invalid(
            "body",
            format!("not valid JSON for this call: {e}"),
        ))
    })
}

#[utoipa::path(post, path = "/v1/containers", request_body = CreateContainerRequest,
    responses((status = 202, body = Container), (status = 400, body = ApiError), (status = 401, body = ApiError)),
    security(("bearer" = [])))]
async fn create<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    body: Bytes,
) -> Result<(StatusCode, Json<Container>), Failure> {
    let req: CreateContainerRequest = parse_body(&body)?;
    let spec = PodSpec::validate(req).map_err(Failure)?;
    let container = state.lifecycle.create(spec).await?;
    Ok((StatusCode::ACCEPTED, Json(container)))
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    all: bool,
}

#[utoipa::path(get, path = "/v1/containers", params(("all" = Option<bool>, Query, description = "include ended containers")),
    responses((status = 200, body = ContainerList)), security(("bearer" = [])))]
async fn list<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    Query(q): Query<ListQuery>,
) -> Result<Json<ContainerList>, Failure> {
    Ok(Json(ContainerList {
        containers: state.lifecycle.list(q.all).await?,
    }))
}

#[utoipa::path(get, path = "/v1/containers/{id}", responses((status = 200, body = Container), (status = 404, body = ApiError)),
    security(("bearer" = [])))]
async fn fetch<N: Node>(
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
async fn stop<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Container>, Failure> {
    let req: StopRequest = if body.is_empty() {
        StopRequest::default()
    } else {
        parse_body(&body)?
    };
    if matches!(req.grace_seconds, Some(g) if g > 3600) {
        return Err(Failure(ApiError::invalid(
            "grace_seconds",
            "must be at most 3600",
        )));
    }
    let grace = req.grace_seconds.map(Duration::from_secs);
    Ok(Json(state.lifecycle.stop(&id, grace).await?))
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
    paths(create, list, fetch, stop, crate::logs::logs, crate::images::build, crate::images::list, crate::images::prune),
    components(schemas(CreateContainerRequest, Container, ContainerList, StopRequest, ApiError, Health,
        berth_api::ImageSource, berth_api::ImageSpec, berth_api::BuildStep, berth_api::BuildEvent,
        berth_api::ImageList, berth_api::ImageSummary, berth_api::PruneResult)),
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

pub(crate) fn body_response(
    status: StatusCode,
    content_type: &'static str,
    body: Body,
) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
