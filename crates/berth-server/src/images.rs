//! `/v1/images`: building image specs (a streamed log), listing and pruning the store.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use berth_api::{ApiError, BuildEvent, ErrorCode, ImageList, ImageSource, ImageSpec, PruneResult};
use futures_util::StreamExt;

use crate::api::{body_response, parse_body, AppState, Failure};
use crate::node::Node;
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
    if let Some(target) = &query.push {
        berth_image::parse_reference(target).map_err(|e| Failure(ApiError::invalid("push", e)))?;
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<BuildEvent>();
    let cancelled = Arc::new(AtomicBool::new(false));

    // A client that goes away cancels the build.
    let watch = tx.clone();
    let flag = cancelled.clone();
    tokio::spawn(async move {
        watch.closed().await;
        flag.store(true, Ordering::SeqCst);
    });

    let lifecycle = state.lifecycle.clone();
    tokio::spawn(async move {
        let log_tx = tx.clone();
        let log = Arc::new(move |line: String| {
            let _ = log_tx.send(BuildEvent::Log(line));
        });
        let outcome = lifecycle
            .node()
            .build(spec, query.push, log, cancelled)
            .await;
        let last = match outcome {
            Ok(built) => BuildEvent::Done {
                image: built.reference,
                cached: built.cached,
            },
            Err(e) => BuildEvent::Error(e.to_string()),
        };
        let _ = tx.send(last);
    });

    let stream = tokio_stream_lines(rx);
    Ok(body_response(
        StatusCode::OK,
        "application/x-ndjson",
        Body::from_stream(stream),
    ))
}

fn tokio_stream_lines(
    rx: tokio::sync::mpsc::UnboundedReceiver<BuildEvent>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    // The stream ends with the build's result: the cancel watcher still holds a sender, so
    // waiting for every sender to go would never end.
    futures_util::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        let event = rx.recv().await?;
        let last = matches!(event, BuildEvent::Done { .. } | BuildEvent::Error(_));
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        Some((Ok(Bytes::from(line)), (!last).then_some(rx)))
    })
    .boxed()
}

#[utoipa::path(get, path = "/v1/images", responses((status = 200, body = ImageList)), security(("bearer" = [])))]
pub async fn list<N: Node>(State(state): State<Arc<AppState<N>>>) -> Json<ImageList> {
    Json(ImageList {
        images: state.lifecycle.node().images(),
    })
}

/// Drops pulled images that no stub uses and layers nothing references; built images and
/// their layers are the build cache and stay.
#[utoipa::path(post, path = "/v1/images/prune", responses((status = 200, body = PruneResult)), security(("bearer" = [])))]
pub async fn prune<N: Node>(
    State(state): State<Arc<AppState<N>>>,
) -> Result<Json<PruneResult>, Failure> {
    let specs = state
        .lifecycle
        .store()
        .stub_specs()
        .await
        .map_err(|e| Failure(ApiError::new(ErrorCode::Internal, e.to_string())))?;
    let mut keep = HashSet::new();
    for spec in specs {
        let name = match &spec.image {
            ImageSource::Reference(r) => Some(r.clone()),
            ImageSource::Spec(s) => s.base_image.clone(),
        };
        if let Some(reference) = name.and_then(|n| berth_image::parse_reference(&n).ok()) {
            keep.insert(reference.whole());
        }
    }
    // Prune waits for pulls and builds in progress; that wait belongs off the async threads.
    let node = state.lifecycle.node().clone();
    let result = tokio::task::spawn_blocking(move || node.prune(keep))
        .await
        .map_err(|e| Failure(ApiError::new(ErrorCode::Internal, format!("prune: {e}"))))?;
    Ok(Json(result))
}
