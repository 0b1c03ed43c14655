//! Who may open the URL of a pod created with `authorized`: the API token, or a scoped
//! token the API minted for one port of that pod, until it expires or is revoked. Checked on
//! every ingress request, so the answer comes from memory; the store keeps it across restarts.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rand::Rng;
use sha2::{Digest, Sha256};

use crate::store::{PodTokenRow, Store, StoreError};

/// Scoped tokens start with this, so a leaked one is recognisable in logs and scanners.
const TOKEN_PREFIX: &str = "bpt_";

pub struct PodAccess {
    store: Store,
    api_tokens: RwLock<HashSet<String>>,
    /// By token hash.
    grants: RwLock<HashMap<String, PodTokenRow>>,
}

/// A token just minted: the secret itself is only ever in this value.
pub struct Minted {
    pub row: PodTokenRow,
    pub token: String,
}

impl PodAccess {
    pub async fn load(store: Store) -> Result<Arc<Self>, StoreError> {
        let api_tokens = store.api_token_hashes().await?.into_iter().collect();
        let grants = store
            .live_pod_tokens(now())
            .await?
            .into_iter()
            .map(|g| (g.token_hash.clone(), g))
            .collect();
        Ok(Arc::new(Self {
            store,
            api_tokens: RwLock::new(api_tokens),
            grants: RwLock::new(grants),
        }))
    }

    pub async fn mint(
        &self,
        container_id: &str,
        port: u16,
        ttl: Duration,
    ) -> Result<Minted, StoreError> {
        let secret: [u8; 24] = rand::rng().random();
        let token = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
        let handle: [u8; 6] = rand::rng().random();
        let at = now();
        let row = PodTokenRow {
            id: format!("tok-{}", hex::encode(handle)),
            token_hash: hash(&token),
            container_id: container_id.to_string(),
            port,
            expires_at: at + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
            created_at: at,
        };
        self.store.insert_pod_token(&row).await?;
        self.grants
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(row.token_hash.clone(), row.clone());
        Ok(Minted { row, token })
    }

    /// A container's live tokens, oldest first.
    pub fn list(&self, container_id: &str) -> Vec<PodTokenRow> {
        let at = now();
        let grants = self.grants.read().unwrap_or_else(|p| p.into_inner());
        let mut rows: Vec<_> = grants
            .values()
            .filter(|g| g.container_id == container_id && g.expires_at > at)
            .cloned()
            .collect();
        rows.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        rows
    }

    /// Revokes a token at once; false if the container had no such token.
    pub async fn revoke(&self, container_id: &str, id: &str) -> Result<bool, StoreError> {
        let found = self.store.delete_pod_token(container_id, id).await?;
        self.grants
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, g| !(g.container_id == container_id && g.id == id));
        Ok(found)
    }
}

impl berth_proxy::Authorizer for PodAccess {
    fn allows(&self, token: &str, container_id: &str, port: u16) -> bool {
        let hashed = hash(token);
        if self
            .api_tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&hashed)
        {
            return true;
        }
        let grants = self.grants.read().unwrap_or_else(|p| p.into_inner());
        grants.get(&hashed).is_some_and(|g| {
            g.container_id == container_id && g.port == port && g.expires_at > now()
        })
    }
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use berth_proxy::Authorizer;

    use super::*;

    #[tokio::test]
    async fn scoped_tokens_open_one_port_of_one_pod_until_expiry_or_revocation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("state.db"))
            .await
            .expect("store");
        store
            .insert_token("admin", &hash("api-token"), 1)
            .await
            .expect("token");
        let access = PodAccess::load(store.clone()).await.expect("load");
        let minted = access
            .mint("pod-a", 8888, Duration::from_secs(600))
            .await
            .expect("mint");
        assert!(minted.token.starts_with(TOKEN_PREFIX));
        assert!(access.allows(&minted.token, "pod-a", 8888));
        assert!(!access.allows(&minted.token, "pod-a", 8080), "another port");
        assert!(!access.allows(&minted.token, "pod-b", 8888), "another pod");
        assert!(!access.allows("bpt_forged", "pod-a", 8888));
        assert!(
            access.allows("api-token", "pod-b", 1),
            "the API token opens all"
        );

        // Tokens survive a restart, and revocation is immediate.
        let reloaded = PodAccess::load(store.clone()).await.expect("reload");
        assert!(reloaded.allows(&minted.token, "pod-a", 8888));
        assert_eq!(reloaded.list("pod-a").len(), 1);
        assert!(reloaded
            .revoke("pod-a", &minted.row.id)
            .await
            .expect("revoke"));
        assert!(!reloaded.allows(&minted.token, "pod-a", 8888));
        assert!(!reloaded
            .revoke("pod-a", &minted.row.id)
            .await
            .expect("again"));

        let expired = access
            .mint("pod-a", 8888, Duration::ZERO)
            .await
            .expect("mint");
        assert!(!access.allows(&expired.token, "pod-a", 8888), "expired");
    }
}
