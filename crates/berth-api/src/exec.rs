//! Running a command in a live pod: `POST /v1/containers/{id}/exec`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The most arguments an exec command may have.
pub const MAX_EXEC_ARGS: usize = 1024;

/// `POST /v1/containers/{id}/exec`: a command to run beside the pod's entrypoint, as the
/// pod's user, under the same limits and filters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// The program and its arguments (looked up on the pod's PATH).
    pub command: Vec<String>,
    /// Added to the pod's environment for this command.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// An absolute path; the pod's working directory when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// Stop the command (SIGKILL) after this many seconds; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

/// One line of the exec response (newline-delimited JSON): output as it comes, then the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecEvent {
    /// A chunk of the command's standard output (invalid UTF-8 replaced).
    Stdout(String),
    Stderr(String),
    /// The command ended with this code (128 + N when killed by signal N).
    Exit(i32),
    /// The command could not run, or the connection to it broke.
    Error(String),
}

/// Terminal sizes a client may ask for, per side.
pub const MAX_TTY_SIDE: u16 = 4096;

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TtySize {
    pub rows: u16,
    pub cols: u16,
}

/// A text message a client sends on the terminal websocket of
/// `GET /v1/containers/{id}/exec/tty` (its binary messages are keystrokes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TtyControl {
    /// The client's terminal changed size.
    Resize(TtySize),
}
