//! `POST /v1/containers/{id}/exec`: a command in a running pod, its output streamed back as
//! newline-delimited JSON.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use berth_api::{ApiError, ExecEvent, ExecRequest, MAX_EXEC_ARGS};
use futures_util::StreamExt;

use super::response::{body_response, parse_body, Failure};
use super::state::AppState;
use crate::node::{ExecCommand, Node};

/// The longest timeout a command may ask for: a day.
const MAX_TIMEOUT_SECONDS: u64 = 24 * 3600;

/// Runs a command beside the pod's entrypoint, as its user, under its limits, filters and
/// runtime. The response (`application/x-ndjson`) is one [`ExecEvent`] per line: `stdout` and
/// `stderr` chunks as they come, then `exit` with the command's code (or `error`). Closing
/// the connection stops the command (SIGTERM, then the runtime is killed after 2 s).
#[utoipa::path(post, path = "/v1/containers/{id}/exec", request_body = ExecRequest,
    responses((status = 200, content_type = "application/x-ndjson", body = ExecEvent),
        (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError)),
    security(("bearer" = [])))]
pub async fn exec<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Failure> {
    let req: ExecRequest = parse_body(&body)?;
    let command = validate(req)?;
    let events = state.lifecycle.exec(&id, command).await?;
    let lines = events.map(|event| {
        let mut line = serde_json::to_vec(&event).map_err(std::io::Error::other)?;
        line.push(b'\n');
        Ok::<_, std::io::Error>(Bytes::from(line))
    });
    Ok(body_response(
        StatusCode::OK,
        "application/x-ndjson",
        Body::from_stream(lines),
    ))
}

pub(super) fn validate(req: ExecRequest) -> Result<ExecCommand, Failure> {
    let invalid = |field: &str, why: String| Failure(ApiError::invalid(field, why));
    if req.command.is_empty() || req.command[0].is_empty() {
        return Err(invalid("command", "must name a program".into()));
    }
    if req.command.len() > MAX_EXEC_ARGS {
        return Err(invalid(
            "command",
            format!(
                "at most {MAX_EXEC_ARGS} arguments, got {}",
                req.command.len()
            ),
        ));
    }
    if req.command.iter().any(|a| a.contains('\0')) {
        return Err(invalid("command", "arguments may not contain NUL".into()));
    }
    for (key, value) in &req.env {
        if !crate::spec::valid_env_name(key) || value.contains('\0') {
            return Err(invalid(
                "env",
                format!("{key:?} is not a variable name like MY_VAR, or its value has NUL"),
            ));
        }
    }
    if let Some(dir) = &req.workdir {
        if !dir.starts_with('/') || dir.contains('\0') {
            return Err(invalid(
                "workdir",
                format!("{dir:?} is not an absolute path"),
            ));
        }
    }
    let timeout = match req.timeout_seconds {
        Some(0) => return Err(invalid("timeout_seconds", "must be at least 1".into())),
        Some(t) if t > MAX_TIMEOUT_SECONDS => {
            return Err(invalid(
                "timeout_seconds",
                format!("must be at most {MAX_TIMEOUT_SECONDS}"),
            ))
        }
        other => other.map(Duration::from_secs),
    };
    Ok(ExecCommand {
        command: req.command,
        env: req.env.into_iter().collect(),
        workdir: req.workdir,
        timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: serde_json::Value) -> ExecRequest {
        serde_json::from_value(v).expect("request")
    }

    #[test]
    fn bad_commands_are_refused_naming_the_field() {
        for (body, field) in [
            (serde_json::json!({"command": []}), "command"),
            (
                serde_json::json!({"command": ["ls"], "env": {"1X": "y"}}),
                "env",
            ),
            (
                serde_json::json!({"command": ["ls"], "workdir": "rel"}),
                "workdir",
            ),
            (
                serde_json::json!({"command": ["ls"], "timeout_seconds": 0}),
                "timeout_seconds",
            ),
        ] {
            let Err(Failure(e)) = validate(req(body.clone())) else {
                panic!("{body} was accepted");
            };
            assert!(
                e.error.message.contains(field),
                "{body}: {}",
                e.error.message
            );
        }
        let Ok(ok) = validate(req(
            serde_json::json!({"command": ["ls", "-l"], "env": {"A_1": "b"}}),
        )) else {
            panic!("a valid request was refused");
        };
        assert_eq!(ok.env, vec![("A_1".to_string(), "b".to_string())]);
    }
}
