//! The client profile: the gateway URL and token the server writes on start, so the CLI and
//! the SDK on the same machine need no flags. One format for the server, the CLI and the SDK
//! (`sdk/python/berth/config.py` reads the same file).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where clients and the server find the profile, when not the default.
pub const PROFILE_ENV: &str = "BERTH_PROFILE";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientProfile {
    /// The API's base URL, like `http://127.0.0.1:7070`.
    pub gateway: String,
    pub token: String,
    /// berth's local CA certificate (PEM path) when the ingress uses it: clients trust it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
}

impl ClientProfile {
    pub fn load(path: &Path) -> Option<Self> {
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
    }
}

/// `$BERTH_PROFILE`, else `$XDG_CONFIG_HOME/berth/profile.json`, else
/// `~/.config/berth/profile.json`.
pub fn default_profile_path() -> PathBuf {
    if let Some(p) = std::env::var_os(PROFILE_ENV) {
        return PathBuf::from(p);
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("/root/.config"));
    base.join("berth").join("profile.json")
}
