//! Certificates from an ACME server (Let's Encrypt, or any RFC 8555 directory) for a real
//! domain, issued per host name on the first handshake that names it, like Caddy's on-demand
//! TLS. The HTTP-01 challenge is answered by the plain listener
//! (`/.well-known/acme-challenge/<token>`), which is why it never redirects those paths.
//! Account and certificates are kept in the state directory, so a restart reuses them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use futures_util::future::BoxFuture;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use serde::{Deserialize, Serialize};

use super::{server_config, write_atomically, CertSource, TlsError};

/// ACME certificates last 90 days or less; renew once a third of that has passed.
const RENEW_AFTER_SECS: i64 = 30 * 24 * 3600;

/// Tokens of the HTTP-01 challenges under way, and their key authorizations, for the
/// ingress to answer at `/.well-known/acme-challenge/<token>`.
#[derive(Debug, Default)]
pub struct AcmeChallenges(RwLock<HashMap<String, String>>);

impl AcmeChallenges {
    pub fn answer(&self, token: &str) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned()
    }

    fn set(&self, token: &str, key_authorization: &str) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.to_string(), key_authorization.to_string());
    }

    #[cfg(test)]
    pub(crate) fn set_for_test(&self, token: &str, key_authorization: &str) {
        self.set(token, key_authorization);
    }

    fn clear(&self, token: &str) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token);
    }
}

pub struct AcmeConfig {
    /// The directory URL (Let's Encrypt's production directory for a public domain).
    pub directory_url: String,
    pub email: Option<String>,
    /// A CA to trust for the directory's own HTTPS (a private or test ACME server).
    pub directory_ca: Option<PathBuf>,
    /// Where the account and the certificates are kept.
    pub dir: PathBuf,
}

pub struct Acme {
    account: Account,
    dir: PathBuf,
    challenges: Arc<AcmeChallenges>,
    issued: Mutex<HashMap<String, Issued>>,
    /// One issuance per name at a time; other handshakes for it wait and share the result.
    issuing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

#[derive(Clone)]
struct Issued {
    config: Arc<ServerConfig>,
    renew_at: i64,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    chain_pem: String,
    key_pem: String,
    issued_at: i64,
}

impl Acme {
    /// Registers (or reuses) the ACME account kept in `config.dir`.
    pub async fn new(
        config: AcmeConfig,
        challenges: Arc<AcmeChallenges>,
    ) -> Result<Self, TlsError> {
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| TlsError::Io { what, path, source }
        };
        std::fs::create_dir_all(&config.dir).map_err(io("creating", &config.dir))?;
        let builder = || {
            match &config.directory_ca {
                Some(ca) => Account::builder_with_root(ca),
                None => Account::builder(),
            }
            .map_err(acme_error)
        };
        let account_path = config.dir.join("account.json");
        let account = match std::fs::read(&account_path) {
            Ok(json) => {
                let credentials: AccountCredentials = serde_json::from_slice(&json)
                    .map_err(|e| TlsError::Acme(format!("{}: {e}", account_path.display())))?;
                builder()?
                    .from_credentials(credentials)
                    .await
                    .map_err(acme_error)?
            }
            Err(_) => {
                let contact = config.email.as_ref().map(|e| format!("mailto:{e}"));
                let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
                let (account, credentials) = builder()?
                    .create(
                        &NewAccount {
                            contact: &contacts,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        config.directory_url.clone(),
                        None,
                    )
                    .await
                    .map_err(acme_error)?;
                let json = serde_json::to_vec(&credentials)
                    .map_err(|e| TlsError::Acme(format!("saving the account: {e}")))?;
                write_atomically(&account_path, &json, 0o600)
                    .map_err(io("writing", &account_path))?;
                account
            }
        };
        Ok(Self {
            account,
            dir: config.dir,
            challenges,
            issued: Mutex::default(),
            issuing: Mutex::default(),
        })
    }

    fn cached(&self, name: &str) -> Option<Arc<ServerConfig>> {
        let issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        let current = issued.get(name)?;
        (current.renew_at > now()).then(|| current.config.clone())
    }

    fn stored_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    fn load_stored(&self, name: &str) -> Option<Issued> {
        let stored: Stored =
            serde_json::from_slice(&std::fs::read(self.stored_path(name)).ok()?).ok()?;
        let issued = from_pem(&stored.chain_pem, &stored.key_pem, stored.issued_at).ok()?;
        (issued.renew_at > now()).then_some(issued)
    }

    async fn config_now(&self, name: &str) -> Result<Arc<ServerConfig>, TlsError> {
        if let Some(config) = self.cached(name) {
            return Ok(config);
        }
        let lock = self
            .issuing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone();
        let _one_at_a_time = lock.lock().await;
        if let Some(config) = self.cached(name) {
            return Ok(config);
        }
        let issued = match self.load_stored(name) {
            Some(issued) => issued,
            None => self.order(name).await?,
        };
        self.issued
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), issued.clone());
        Ok(issued.config)
    }

    async fn order(&self, name: &str) -> Result<Issued, TlsError> {
        tracing::info!("ACME: ordering a certificate for {name}");
        let identifiers = [Identifier::Dns(name.to_string())];
        let mut order = self
            .account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(acme_error)?;
        let mut tokens = Vec::new();
        let result = async {
            let mut authorizations = order.authorizations();
            while let Some(authz) = authorizations.next().await {
                let mut authz = authz.map_err(acme_error)?;
                if authz.status != AuthorizationStatus::Pending {
                    continue;
                }
                let mut challenge = authz.challenge(ChallengeType::Http01).ok_or_else(|| {
                    TlsError::Acme(format!("the server offers no HTTP-01 challenge for {name}"))
                })?;
                self.challenges
                    .set(&challenge.token, challenge.key_authorization().as_str());
                tokens.push(challenge.token.clone());
                challenge.set_ready().await.map_err(acme_error)?;
            }
            let status = order
                .poll_ready(&RetryPolicy::default())
                .await
                .map_err(acme_error)?;
            if status != OrderStatus::Ready {
                return Err(TlsError::Acme(format!(
                    "the order for {name} ended {status:?}; is {name} reachable on port 80 of this host?"
                )));
            }
            let key_pem = order.finalize().await.map_err(acme_error)?;
            let chain_pem = order
                .poll_certificate(&RetryPolicy::default())
                .await
                .map_err(acme_error)?;
            Ok((chain_pem, key_pem))
        }
        .await;
        for token in &tokens {
            self.challenges.clear(token);
        }
        let (chain_pem, key_pem) = result?;
        let issued_at = now();
        let issued = from_pem(&chain_pem, &key_pem, issued_at)?;
        let stored = Stored {
            chain_pem,
            key_pem,
            issued_at,
        };
        let path = self.stored_path(name);
        let json = serde_json::to_vec(&stored).map_err(|e| TlsError::Acme(e.to_string()))?;
        write_atomically(&path, &json, 0o600).map_err(|source| TlsError::Io {
            what: "writing",
            path,
            source,
        })?;
        tracing::info!("ACME: certificate for {name} issued");
        Ok(issued)
    }
}

impl CertSource for Acme {
    fn config_for<'a>(
        &'a self,
        server_name: &'a str,
    ) -> BoxFuture<'a, Result<Arc<ServerConfig>, TlsError>> {
        Box::pin(self.config_now(server_name))
    }
}

fn from_pem(chain_pem: &str, key_pem: &str, issued_at: i64) -> Result<Issued, TlsError> {
    let bad = |message: String| TlsError::BadPem {
        path: "ACME certificate".into(),
        message,
    };
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| bad(e.to_string()))?;
    Ok(Issued {
        config: server_config(chain, key)?,
        renew_at: issued_at + RENEW_AFTER_SECS,
    })
}

fn acme_error(e: instant_acme::Error) -> TlsError {
    TlsError::Acme(e.to_string())
}

fn now() -> i64 {
    crate::activity::now_ms() / 1000
}
