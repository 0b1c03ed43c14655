//! What can go wrong running containers: runtime commands (with their stderr), specs, mounts,
//! users and the shim.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{runtime} {action} {id} failed ({status}): {stderr}")]
    Command {
        runtime: String,
        action: String,
        id: String,
        status: String,
        stderr: String,
    },
    #[error("cannot run {binary}: {source}")]
    Spawn {
        binary: String,
        #[source]
        source: std::io::Error,
    },
    #[error("building the runtime spec: {0}")]
    Spec(String),
    #[error("user {user:?} not found in the image's /etc/passwd")]
    UnknownUser { user: String },
    #[error("mounting the root filesystem at {path}: {source}")]
    Mount {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("the overlay mount options for {path} exceed the kernel's page-size limit ({len} bytes, {layers} layers)")]
    TooManyLayers {
        path: PathBuf,
        len: usize,
        layers: usize,
    },
    #[error("shim for {id}: {message}")]
    Shim { id: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let path = path.into();
    move |source| RuntimeError::Io { path, source }
}
