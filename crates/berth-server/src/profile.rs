//! The admin token and the client profile, so the CLI and SDK on the same machine work with
//! no flags.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rand::Rng;
use sha2::{Digest, Sha256};

use berth_api::ClientProfile;

use crate::store::Store;
use crate::ServerError;

/// The admin token: created with the store on first start, kept (0600) in the state
/// directory so later starts can rewrite the profile; the store keeps only its hash.
pub async fn ensure_admin_token(store: &Store, state_dir: &Path) -> Result<String, ServerError> {
    let path = state_dir.join("admin-token");
    if let Ok(token) = std::fs::read_to_string(&path) {
        let token = token.trim().to_string();
        if store.token_exists(&hash(&token)).await? {
            return Ok(token);
        }
    }
    let bytes: [u8; 32] = rand::rng().random();
    let token = hex::encode(bytes);
    store
        .insert_token(
            "admin",
            &hash(&token),
            time::OffsetDateTime::now_utc().unix_timestamp(),
        )
        .await?;
    write_private(&path, token.as_bytes())
        .map_err(|source| ServerError::Profile { path, source })?;
    tracing::info!("created the admin API token");
    Ok(token)
}

pub fn write_profile(path: &Path, profile: &ClientProfile) -> Result<(), ServerError> {
    let err = |source| ServerError::Profile {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let text = serde_json::to_vec_pretty(profile).map_err(|e| err(std::io::Error::other(e)))?;
    write_private(path, &text).map_err(err)
}

pub(crate) fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(data)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The URL clients use: a wildcard listen address is reached through loopback.
pub fn gateway_url(addr: SocketAddr) -> String {
    let host = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
        ip if ip.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!("http://{host}:{}", addr.port())
}

/// Checks API tokens against the hashes in the store; the HTTP layer's only door to them.
#[derive(Clone)]
pub struct Tokens {
    store: Store,
}

impl Tokens {
    pub fn new(store: Store) -> Self {
        Tokens { store }
    }

    pub async fn accepts(&self, token: &str) -> Result<bool, crate::store::StoreError> {
        self.store.token_exists(&hash(token)).await
    }
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_urls() {
        assert_eq!(
            gateway_url("0.0.0.0:7070".parse().expect("addr")),
            "http://127.0.0.1:7070"
        );
        assert_eq!(
            gateway_url("[::]:7070".parse().expect("addr")),
            "http://[::1]:7070"
        );
        assert_eq!(
            gateway_url("127.0.0.1:1".parse().expect("addr")),
            "http://127.0.0.1:1"
        );
    }

    #[tokio::test]
    async fn admin_token_is_stable_across_starts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db")).await.expect("store");
        let first = ensure_admin_token(&store, dir.path()).await.expect("token");
        let again = ensure_admin_token(&store, dir.path()).await.expect("token");
        assert_eq!(first, again);
        assert_eq!(store.token_count().await.expect("count"), 1);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("admin-token"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
