//! Files in a live pod: `GET`/`PUT /v1/containers/{id}/files?path=` carry one file's bytes,
//! `GET /v1/containers/{id}/files/list?path=` lists a directory.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The largest file an upload or download carries: 1 GiB.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024 * 1024;

/// Which file (or directory, for a listing), as an absolute path in the pod.
#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FilePath {
    /// An absolute path in the pod, as the pod sees it; `..` is refused.
    #[param(pattern = "^/")]
    pub path: String,
    /// Permission bits for an uploaded file (644 when absent) or a new directory (755), in
    /// octal (`644`, `0755`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(pattern = "^[0-7]{1,4}$")]
    pub mode: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    File,
    Directory,
    Symlink,
    Other,
}

/// One entry of a directory in the pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileInfo {
    pub name: String,
    pub kind: FileKind,
    pub size: u64,
    /// Permission bits as octal digits (`"644"`, `"4755"`).
    pub mode: String,
    /// Last modification, seconds since the Unix epoch.
    pub modified: i64,
}

/// `GET /v1/containers/{id}/files/list`: a directory's entries by name (symlinks listed as
/// themselves, not followed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileListing {
    pub path: String,
    pub entries: Vec<FileInfo>,
    /// More entries were there than a listing returns (10,000).
    pub truncated: bool,
}

/// `POST /v1/containers/{id}/files/mkdir`: the directory, and whether it was made now
/// (`false`: it was already there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DirMade {
    pub path: String,
    pub created: bool,
}

/// `PUT /v1/containers/{id}/files`: the file written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FileWritten {
    pub path: String,
    pub size: u64,
}
