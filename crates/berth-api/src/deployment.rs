//! Deployments: a named pod with versions, served at `<name>-<port>.<domain>` and woken by
//! the next request after it scaled to zero.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Container, CreateContainerRequest};

/// `POST /v1/deployments`: a new version of the named deployment.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// A DNS label: lower-case letters, digits and `-`.
    pub name: String,
    pub pod: CreateContainerRequest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeploymentStatus {
    /// Served; a request with no running container starts one.
    Active,
    /// Stopped by request: requests get 404 until the next deploy.
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VersionStatus {
    /// Its first container is starting; the previous version still serves.
    Deploying,
    /// The version requests go to.
    Active,
    /// A later version took over.
    Replaced,
    /// It never answered; the previous version kept serving.
    Failed,
}

impl VersionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            VersionStatus::Deploying => "DEPLOYING",
            VersionStatus::Active => "ACTIVE",
            VersionStatus::Replaced => "REPLACED",
            VersionStatus::Failed => "FAILED",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeploymentVersion {
    /// `<name>-v<N>`, shown as the deployment id of its containers.
    pub id: String,
    pub name: String,
    pub version: u32,
    pub status: VersionStatus,
    pub reason: Option<String>,
    /// The container started for this version, while it has one.
    pub container_id: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Deployment {
    pub name: String,
    pub status: DeploymentStatus,
    /// The active version, once one answered.
    pub version: Option<u32>,
    pub ports: Vec<u16>,
    /// Stable across versions: `<name>-<port>.<domain>`.
    pub urls: Vec<String>,
    /// Containers of the deployment that are starting or running.
    pub containers: Vec<String>,
    /// Newest first.
    pub versions: Vec<DeploymentVersion>,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeploymentList {
    pub deployments: Vec<Deployment>,
}

/// `POST /v1/deployments` answers the version being deployed and its first container.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeployResponse {
    pub deployment: Deployment,
    pub version: DeploymentVersion,
    pub container: Container,
}
