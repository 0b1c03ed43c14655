//! `/v1/images`: building image specs (a streamed log), listing and pruning the store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use berth_api::{ApiError, BuildEvent, ErrorCode, ImageList, ImageSpec, PruneResult};
use futures_util::StreamExt;

use super::response::{body_response, parse_body, Failure};
use super::state::AppState;
use crate::node::{BuildImage, Node};
use crate::spec::validate_image_spec;

#[derive(serde::Deserialize)]
pub struct BuildQuery {
    /// Push the built image to this reference.
    push: Option<String>,
}

/// Builds an image spec (and with `?push=REF` pushes it). The response is newline-delimited JSON (`application/x-ndjson`),
/// one [`BuildEvent`] per line as the build runs, ending with `done` or `error`. Closing
/// the connection cancels the build: its container stops and no half-written layer stays.
#[utoipa::path(post, path = "/v1/images/build", request_body = ImageSpec,
    params(("push" = Option<String>, Query, description = "push the built image to this reference")),
    responses((status = 200, content_type = "application/x-ndjson", body = BuildEvent),
        (status = 400, body = ApiError)),
    security(("bearer" = [])))]
pub async fn build<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    Query(query): Query<BuildQuery>,
    body: Bytes,
) -> Result<Response, Failure> {
    let spec: ImageSpec = parse_body(&body)?;
    validate_image_spec(&spec).map_err(Failure)?;
    if let Some(context) = &spec.context {
        if !state.storage.has_code(context) {
            return Err(Failure(crate::spec::missing_context(context)));
        }
    }
    if let Some(target) = &query.push {
        berth_image::parse_reference(target).map_err(|e| Failure(ApiError::invalid("push", e)))?;
    }
    let slot = state.images.build_slot().map_err(|limit| {
        Failure(ApiError::new(
            ErrorCode::TooManyRequests,
            format!(
                "{limit} image builds are already running on this server \
                 (--max-pending-builds); retry in a moment"
            ),
        ))
    })?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<BuildEvent>();
    let cancelled = Arc::new(AtomicBool::new(false));

    // A client that goes away cancels the build.
    let watch = tx.clone();
    let flag = cancelled.clone();
    tokio::spawn(async move {
        watch.closed().await;
        flag.store(true, Ordering::SeqCst);
    });

    let state = state.clone();
    tokio::spawn(async move {
        let log_tx = tx.clone();
        let log = Arc::new(move |line: String| {
            let _ = log_tx.send(BuildEvent::Log(line));
        });
        let req = BuildImage {
            spec,
            push: query.push,
        };
        let built = state.images.build(req, log, cancelled).await;
        drop(slot);
        let last = match built {
            Ok(built) => BuildEvent::Done {
                image: built.reference,
                cached: built.cached,
            },
            Err(e) => BuildEvent::Error(e.to_string()),
        };
        let _ = tx.send(last);
    });

    Ok(body_response(
        StatusCode::OK,
        "application/x-ndjson",
        Body::from_stream(event_lines(rx)),
    ))
}

fn event_lines(
    rx: tokio::sync::mpsc::UnboundedReceiver<BuildEvent>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    // The stream ends with the build's result: the cancel watcher still holds a sender, so
    // waiting for every sender to go would never end.
    futures_util::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        let event = rx.recv().await?;
        let last = matches!(event, BuildEvent::Done { .. } | BuildEvent::Error(_));
        let line = serde_json::to_vec(&event).map(|mut line| {
            line.push(b'\n');
            Bytes::from(line)
        });
        Some((line.map_err(std::io::Error::other), (!last).then_some(rx)))
    })
    .boxed()
}

#[utoipa::path(get, path = "/v1/images", responses((status = 200, body = ImageList)), security(("bearer" = [])))]
pub async fn list<N: Node>(State(state): State<Arc<AppState<N>>>) -> Json<ImageList> {
    Json(ImageList {
        images: state.images.list().await,
    })
}

/// Drops pulled images that no stub uses and layers nothing references; built images and
/// their layers are the build cache and stay.
#[utoipa::path(post, path = "/v1/images/prune", responses((status = 200, body = PruneResult)), security(("bearer" = [])))]
pub async fn prune<N: Node>(
    State(state): State<Arc<AppState<N>>>,
) -> Result<Json<PruneResult>, Failure> {
    Ok(Json(state.images.prune().await.map_err(Failure::internal)?))
}
