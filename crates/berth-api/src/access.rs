//! Access tokens for pods created with `authorized`: minted per pod and port, with an expiry.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The longest a scoped token may live.
pub const MAX_POD_TOKEN_TTL_SECONDS: u64 = 30 * 24 * 3600;

/// `POST /v1/containers/{id}/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePodTokenRequest {
    /// One of the pod's ports; the token opens that port's URL only.
    pub port: u32,
    /// Seconds until the token stops working (1 to 30 days' worth).
    pub ttl_seconds: u64,
}

/// A scoped token. `token` is shown once, in the answer to its creation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PodToken {
    /// Handle for listing and revoking; not a secret.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub container_id: String,
    pub port: u16,
    /// Unix seconds.
    pub expires_at: i64,
    /// The URL the token opens.
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PodTokenList {
    pub tokens: Vec<PodToken>,
}
