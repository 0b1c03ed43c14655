//! What pods use besides an image: uploaded code, volumes and secrets.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `PUT /v1/code/{digest}`: the archive was checked and unpacked.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CodeUploaded {
    /// `sha256:<hex>` of the uploaded bytes.
    pub digest: String,
    pub files: u64,
    /// Bytes of file content unpacked.
    pub bytes: u64,
}

/// A named volume on the node.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Volume {
    pub name: String,
    pub size_bytes: u64,
    /// Unix seconds.
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VolumeList {
    pub volumes: Vec<Volume>,
}

/// `PUT /v1/secrets/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSecret {
    pub value: String,
}

/// A secret as the API shows it: never its value.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Secret {
    pub name: String,
    /// Unix seconds of the last write.
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SecretList {
    pub secrets: Vec<Secret>,
}
