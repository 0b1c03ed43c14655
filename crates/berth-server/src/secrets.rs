//! Secrets: values encrypted at rest (XChaCha20-Poly1305) with a key kept 0600 in the state
//! directory, read only when a pod starts. The API's read side sees names, never values.

use std::path::Path;

use berth_api::{ApiError, Secret};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::Rng;

use crate::store::{Store, StoreError};

/// The largest secret value accepted.
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no secret named {0}; create it with `berth secret create {0} VALUE`")]
    Missing(String),
    #[error(
        "the secret {0} cannot be decrypted with this server's key (was secrets.key replaced?)"
    )]
    Undecryptable(String),
    #[error("the secret key {path}: {source}")]
    Key {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Clone)]
pub struct Secrets {
    store: Store,
    cipher: XChaCha20Poly1305,
}

impl Secrets {
    /// Opens the key in `state_dir`, creating it on first start.
    pub fn open(store: Store, state_dir: &Path) -> Result<Self, SecretError> {
        let path = state_dir.join("secrets.key");
        let key = match std::fs::read(&path) {
            Ok(bytes) if bytes.len() == 32 => bytes,
            Ok(_) => {
                return Err(SecretError::Key {
                    path,
                    source: std::io::Error::other("it is not 32 bytes long"),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key: [u8; 32] = rand::rng().random();
                crate::profile::write_private(&path, &key).map_err(|source| SecretError::Key {
                    path: path.clone(),
                    source,
                })?;
                key.to_vec()
            }
            Err(source) => return Err(SecretError::Key { path, source }),
        };
        let cipher = XChaCha20Poly1305::new_from_slice(&key).map_err(|_| SecretError::Key {
            path,
            source: std::io::Error::other("not a valid key"),
        })?;
        Ok(Secrets { store, cipher })
    }

    /// Checks a name and value at the API edge.
    pub fn validate(name: &str, value: &str) -> Result<(), ApiError> {
        if !crate::spec::valid_env_name(name) || name.len() > 255 {
            return Err(ApiError::invalid(
                "name",
                format!("{name:?} is not a secret name: it becomes an environment variable (letters, digits and '_', not starting with a digit)"),
            ));
        }
        if value.len() > MAX_SECRET_BYTES || value.contains('\0') {
            return Err(ApiError::invalid(
                "value",
                format!("must be at most {MAX_SECRET_BYTES} bytes, without NUL bytes"),
            ));
        }
        Ok(())
    }

    pub async fn put(&self, name: &str, value: &str) -> Result<Secret, SecretError> {
        let nonce_bytes: [u8; 24] = rand::rng().random();
        let nonce = XNonce::from_slice(&nonce_bytes);
        let ciphertext = self
            .cipher
            .encrypt(
                nonce,
                Payload {
                    msg: value.as_bytes(),
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Undecryptable(name.to_string()))?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        self.store
            .put_secret(name, &nonce_bytes, &ciphertext, now)
            .await?;
        Ok(Secret {
            name: name.to_string(),
            created_at: now,
        })
    }

    /// The plain value, for a starting pod's environment only.
    pub async fn reveal(&self, name: &str) -> Result<String, SecretError> {
        let (nonce, ciphertext) = self
            .store
            .secret(name)
            .await?
            .ok_or_else(|| SecretError::Missing(name.to_string()))?;
        if nonce.len() != 24 {
            return Err(SecretError::Undecryptable(name.to_string()));
        }
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| SecretError::Undecryptable(name.to_string()))?;
        String::from_utf8(plain).map_err(|_| SecretError::Undecryptable(name.to_string()))
    }

    /// Fails naming the first secret that does not exist.
    pub async fn check_exist(&self, names: &[String]) -> Result<(), SecretError> {
        for name in names {
            if self.store.secret(name).await?.is_none() {
                return Err(SecretError::Missing(name.clone()));
            }
        }
        Ok(())
    }

    pub async fn list(&self) -> Result<Vec<Secret>, SecretError> {
        Ok(self
            .store
            .secret_names()
            .await?
            .into_iter()
            .map(|(name, created_at)| Secret { name, created_at })
            .collect())
    }

    pub async fn delete(&self, name: &str) -> Result<bool, SecretError> {
        Ok(self.store.delete_secret(name).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn values_are_stored_encrypted_and_come_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db")).await.expect("store");
        let secrets = Secrets::open(store.clone(), dir.path()).expect("open");
        secrets.put("API_KEY", "hunter2-value").await.expect("put");
        assert_eq!(
            secrets.reveal("API_KEY").await.expect("reveal"),
            "hunter2-value"
        );
        let (_, ciphertext) = store.secret("API_KEY").await.expect("row").expect("some");
        assert!(!ciphertext
            .windows(b"hunter2".len())
            .any(|w| w == b"hunter2"));
        // The key survives a restart; a missing secret is named.
        let again = Secrets::open(store.clone(), dir.path()).expect("reopen");
        assert_eq!(
            again.reveal("API_KEY").await.expect("reveal"),
            "hunter2-value"
        );
        let err = again
            .check_exist(&["API_KEY".into(), "NOPE".into()])
            .await
            .expect_err("missing");
        assert!(err.to_string().contains("NOPE"), "{err}");
        assert!(Secrets::validate("1BAD", "x").is_err());
    }
}
