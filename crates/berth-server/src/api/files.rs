//! `/v1/containers/{id}/files`: one file's bytes in or out of a running pod, and directory
//! listings. Paths are the pod's own, resolved inside it (no `..`, no symlink out).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Json;
use berth_api::{ApiError, DirMade, FileListing, FilePath, FileWritten, MAX_FILE_BYTES};
use futures_util::{StreamExt, TryStreamExt};

use super::response::{body_response, Failure};
use super::state::AppState;
use crate::node::Node;

/// Permission bits of an uploaded file when the caller names none.
const DEFAULT_MODE: u32 = 0o644;
/// Permission bits of a new directory when the caller names none.
const DEFAULT_DIR_MODE: u32 = 0o755;

/// The file's bytes (`application/octet-stream`); its permission bits in `X-Berth-Mode`.
#[utoipa::path(get, path = "/v1/containers/{id}/files", params(FilePath),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError), (status = 413, body = ApiError)),
    security(("bearer" = [])))]
pub async fn download<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    Path(id): Path<String>,
    Query(q): Query<FilePath>,
) -> Result<Response, Failure> {
    checked(&q.path)?;
    let file = state
        .lifecycle
        .read_file(&id, q.path, MAX_FILE_BYTES)
        .await?;
    let body = Body::from_stream(file.body.map_err(std::io::Error::other));
    let mut resp = body_response(StatusCode::OK, "application/octet-stream", body);
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(file.size));
    if let Ok(mode) = HeaderValue::from_str(&format!("{:o}", file.mode)) {
        headers.insert("x-berth-mode", mode);
    }
    Ok(resp)
}

/// Writes the body to the path (its directory must exist), replacing a file there; the
/// file belongs to the pod's user. Nothing is left behind when the upload fails. Over
/// 1 GiB is 413.
#[utoipa::path(put, path = "/v1/containers/{id}/files", params(FilePath),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = FileWritten), (status = 400, body = ApiError),
        (status = 404, body = ApiError), (status = 409, body = ApiError),
        (status = 413, body = ApiError)),
    security(("bearer" = [])))]
pub async fn upload<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    Path(id): Path<String>,
    Query(q): Query<FilePath>,
    body: Body,
) -> Result<(StatusCode, Json<FileWritten>), Failure> {
    checked(&q.path)?;
    let mode = match q.mode.as_deref() {
        None => DEFAULT_MODE,
        Some(text) => parse_mode(text)?,
    };
    let stream = body
        .into_data_stream()
        .map_err(std::io::Error::other)
        .boxed();
    let size = state
        .lifecycle
        .write_file(&id, q.path.clone(), mode, stream, MAX_FILE_BYTES)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(FileWritten { path: q.path, size }),
    ))
}

/// The directory's entries by name, symlinks as themselves.
#[utoipa::path(get, path = "/v1/containers/{id}/files/list", params(FilePath),
    responses((status = 200, body = FileListing), (status = 400, body = ApiError),
        (status = 404, body = ApiError), (status = 409, body = ApiError)),
    security(("bearer" = [])))]
pub async fn list<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    Path(id): Path<String>,
    Query(q): Query<FilePath>,
) -> Result<Json<FileListing>, Failure> {
    checked(&q.path)?;
    Ok(Json(state.lifecycle.list_files(&id, q.path).await?))
}

/// Makes a directory (its parent must exist), owned by the pod's user: 201 when made, 200
/// when a directory was already there.
#[utoipa::path(post, path = "/v1/containers/{id}/files/mkdir", params(FilePath),
    responses((status = 201, body = DirMade), (status = 200, body = DirMade),
        (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError)),
    security(("bearer" = [])))]
pub async fn make_dir<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    Path(id): Path<String>,
    Query(q): Query<FilePath>,
) -> Result<(StatusCode, Json<DirMade>), Failure> {
    checked(&q.path)?;
    let mode = match q.mode.as_deref() {
        None => DEFAULT_DIR_MODE,
        Some(text) => parse_mode(text)?,
    };
    let created = state.lifecycle.make_dir(&id, q.path.clone(), mode).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(DirMade {
            path: q.path,
            created,
        }),
    ))
}

/// The path rules, checked before the pod is looked at.
fn checked(path: &str) -> Result<(), Failure> {
    let why = if !path.starts_with('/') {
        "must be absolute"
    } else if path.contains('\0') {
        "may not contain NUL"
    } else if path.split('/').any(|part| part == "..") {
        "may not contain '..'"
    } else if path.len() > 4096 {
        "is longer than 4096 bytes"
    } else {
        return Ok(());
    };
    Err(Failure(ApiError::invalid(
        "path",
        format!("{path:?} {why}"),
    )))
}

fn parse_mode(text: &str) -> Result<u32, Failure> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|mode| *mode <= 0o7777)
        .ok_or_else(|| {
            Failure(ApiError::invalid(
                "mode",
                format!("{text:?} is not permission bits in octal, like 644 or 0755"),
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_be_absolute_and_stay_put() {
        assert!(checked("/tmp/x").is_ok());
        assert!(checked("/").is_ok());
        for bad in ["tmp/x", "", "/tmp/../etc/passwd", "/..", "/a\0b"] {
            assert!(checked(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn modes_are_octal_permission_bits() {
        assert_eq!(parse_mode("644").ok(), Some(0o644));
        assert_eq!(parse_mode("0755").ok(), Some(0o755));
        assert_eq!(parse_mode("4755").ok(), Some(0o4755));
        for bad in ["888", "rwx", "17777", "-1", ""] {
            assert!(parse_mode(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
