//! What can go wrong with images: references, registries, blobs, layers and the store, each
//! naming the image or path it concerns.

use std::path::PathBuf;

use crate::unpack::UnpackError;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("image {reference} not found in registry {registry}: {detail}")]
    NotFound {
        reference: String,
        registry: String,
        detail: String,
    },
    #[error("registry {registry} refused the credentials for {reference}: {detail}")]
    Unauthorized {
        reference: String,
        registry: String,
        detail: String,
    },
    #[error("registry {registry} unreachable while pulling {reference}: {detail}")]
    Unreachable {
        reference: String,
        registry: String,
        detail: String,
    },
    #[error("pulling {reference} from {registry} failed: {detail}")]
    Registry {
        reference: String,
        registry: String,
        detail: String,
    },
    #[error("image {reference} has an unsupported layer media type {media_type}")]
    UnsupportedLayer {
        reference: String,
        media_type: String,
    },
    #[error("image {reference} has an invalid config: {detail}")]
    BadConfig { reference: String, detail: String },
    #[error("layer {digest} of {reference}: {source}")]
    Unpack {
        reference: String,
        digest: String,
        #[source]
        source: UnpackError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.into();
    move |source| ImageError::Io { path, source }
}
