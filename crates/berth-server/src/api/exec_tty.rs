//! `GET /v1/containers/{id}/exec/tty`: an interactive command on a terminal, over a
//! websocket. Binary messages carry the terminal's bytes both ways; the client's text
//! messages are [`TtyControl`]s (resize); the server's last text message is the command's
//! end as an [`ExecEvent`] (`{"exit": N}` or `{"error": "..."}`), then it closes.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use berth_api::{ApiError, ExecEvent, ExecRequest, TtyControl, TtySize, MAX_TTY_SIDE};
use futures_util::{SinkExt, StreamExt};

use super::exec::validate;
use super::response::Failure;
use super::state::AppState;
use crate::node::{Node, TtyInput, TtySession};

const DEFAULT_SIZE: TtySize = TtySize { rows: 24, cols: 80 };

/// The query of a terminal request, as documented: `command` repeats once per argument and
/// `env` once per `NAME=value`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // only documents the query, which is read as pairs
struct TtyQuery {
    /// The program, then each argument (repeat the parameter).
    command: Vec<String>,
    /// `NAME=value` added to the environment (repeat the parameter).
    env: Option<Vec<String>>,
    /// An absolute path; the pod's working directory when absent.
    workdir: Option<String>,
    /// Stop the command after this many seconds.
    timeout_seconds: Option<u64>,
    /// The terminal's rows (default 24).
    rows: Option<u16>,
    /// The terminal's columns (default 80).
    cols: Option<u16>,
}

/// Upgrades to a websocket running the command on a terminal, as the pod's user, under its
/// limits, filters and runtime. Closing the websocket hangs the command up.
#[utoipa::path(get, path = "/v1/containers/{id}/exec/tty", params(TtyQuery),
    responses((status = 101, description = "the terminal's websocket"),
        (status = 400, body = ApiError), (status = 404, body = ApiError),
        (status = 409, body = ApiError)),
    security(("bearer" = [])))]
pub async fn exec_tty<N: Node>(
    State(state): State<Arc<AppState<N>>>,
    Path(id): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
    upgrade: WebSocketUpgrade,
) -> Result<Response, Failure> {
    let (req, size) = parse_query(pairs)?;
    let command = validate(req)?;
    // Started before the upgrade, so a stopped pod is a plain 409; dropped with the
    // session if the client never completes the upgrade.
    let session = state.lifecycle.exec_tty(&id, command, size).await?;
    Ok(upgrade.on_upgrade(move |socket| pump(socket, session)))
}

fn parse_query(pairs: Vec<(String, String)>) -> Result<(ExecRequest, TtySize), Failure> {
    let invalid = |field: &str, why: String| Failure(ApiError::invalid(field, why));
    let mut req = ExecRequest::default();
    let mut size = DEFAULT_SIZE;
    for (key, value) in pairs {
        match key.as_str() {
            "command" => req.command.push(value),
            "env" => {
                let Some((name, value)) = value.split_once('=') else {
                    return Err(invalid("env", format!("{value:?} is not NAME=value")));
                };
                req.env.insert(name.to_string(), value.to_string());
            }
            "workdir" => req.workdir = Some(value),
            "timeout_seconds" => {
                req.timeout_seconds = Some(value.parse().map_err(|_| {
                    invalid("timeout_seconds", format!("{value:?} is not a number"))
                })?)
            }
            "rows" => size.rows = side("rows", &value)?,
            "cols" => size.cols = side("cols", &value)?,
            other => {
                return Err(invalid(
                    other,
                    "is not a parameter of this request (command, env, workdir, timeout_seconds, rows, cols)".into(),
                ))
            }
        }
    }
    Ok((req, size))
}

fn side(field: &str, value: &str) -> Result<u16, Failure> {
    match value.parse::<u16>() {
        Ok(n) if (1..=MAX_TTY_SIDE).contains(&n) => Ok(n),
        _ => Err(Failure(ApiError::invalid(
            field,
            format!("must be a number from 1 to {MAX_TTY_SIDE}, got {value:?}"),
        ))),
    }
}

/// Copies between the websocket and the terminal until the command ends or the client goes.
async fn pump(socket: WebSocket, session: TtySession) {
    let TtySession {
        mut output,
        input,
        ended,
    } = session;
    let (mut to_client, mut from_client) = socket.split();
    // Owns `input`: when the client goes, dropping it hangs the command up.
    let keys = tokio::spawn(async move {
        while let Some(Ok(message)) = from_client.next().await {
            let sent = match message {
                Message::Binary(data) => input.send(TtyInput::Data(data)).await,
                Message::Text(text) => match serde_json::from_str::<TtyControl>(&text) {
                    Ok(TtyControl::Resize(size))
                        if (1..=MAX_TTY_SIDE).contains(&size.rows)
                            && (1..=MAX_TTY_SIDE).contains(&size.cols) =>
                    {
                        input.send(TtyInput::Resize(size)).await
                    }
                    _ => Ok(()), // unknown controls are ignored, as a terminal would
                },
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => Ok(()),
            };
            if sent.is_err() {
                break;
            }
        }
    });
    while let Some(chunk) = output.recv().await {
        if to_client.send(Message::Binary(chunk)).await.is_err() {
            keys.abort();
            return;
        }
    }
    keys.abort();
    let last = ended
        .await
        .unwrap_or_else(|_| ExecEvent::Error("the command was stopped".into()));
    if let Ok(text) = serde_json::to_string(&last) {
        let _ = to_client.send(Message::Text(text.into())).await;
    }
    let _ = to_client.send(Message::Close(None)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_query_gives_the_command_env_and_size() {
        let Ok((req, size)) = parse_query(pairs(&[
            ("command", "sh"),
            ("command", "-c"),
            ("command", "echo a=b"),
            ("env", "A=b=c"),
            ("rows", "50"),
        ])) else {
            panic!("refused");
        };
        assert_eq!(req.command, ["sh", "-c", "echo a=b"]);
        assert_eq!(req.env.get("A").map(String::as_str), Some("b=c"));
        assert_eq!(size, TtySize { rows: 50, cols: 80 });
    }

    #[test]
    fn bad_queries_are_refused_naming_the_field() {
        for (query, field) in [
            (vec![("command", "sh"), ("rows", "0")], "rows"),
            (vec![("command", "sh"), ("cols", "99999")], "cols"),
            (vec![("command", "sh"), ("env", "NOEQUALS")], "env"),
            (vec![("command", "sh"), ("user", "root")], "user"),
        ] {
            let Err(Failure(e)) = parse_query(pairs(&query)) else {
                panic!("{query:?} was accepted");
            };
            assert!(e.error.message.contains(field), "{}", e.error.message);
        }
    }
}
