//! berth's own certificate authority, for TLS with no domain of one's own (like Caddy's local
//! HTTPS): made on first start and kept in the state directory (key 0600), it issues a
//! certificate per host name at the first handshake that names it. Clients trust the CA once
//! (`berth ca` says how) and every pod URL after that.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use berth_pki::{leaf_params, KeptCa};
use futures_util::future::BoxFuture;
use rcgen::{ExtendedKeyUsagePurpose, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;
use time::{Duration, OffsetDateTime};

use super::{server_config, CertSource, TlsError};

/// Leaf certificates are short-lived and reissued from memory well before they end.
const LEAF_LIFETIME: Duration = Duration::days(7);
const LEAF_RENEW_BEFORE: Duration = Duration::days(1);

pub struct LocalCa {
    ca: KeptCa,
    issued: Mutex<HashMap<String, Issued>>,
}

struct Issued {
    config: Arc<ServerConfig>,
    renew_at: OffsetDateTime,
}

impl LocalCa {
    /// The CA kept in `dir`, made there (dir 0700, key 0600) if it is not there yet.
    pub fn load_or_create(dir: &Path) -> Result<Self, TlsError> {
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into());
        Ok(Self {
            ca: KeptCa::load_or_create(dir, &format!("berth local CA ({host})"))?,
            issued: Mutex::default(),
        })
    }

    /// The CA certificate (PEM) that clients add to their trust stores.
    pub fn cert_path(&self) -> &Path {
        self.ca.cert_path()
    }

    fn issue(&self, name: &str) -> Result<Issued, TlsError> {
        let now = OffsetDateTime::now_utc();
        let mut params = leaf_params(name, LEAF_LIFETIME)?;
        params.subject_alt_names = vec![rcgen::SanType::DnsName(name.try_into()?)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, self.ca.issuer())?;
        let chain = vec![cert.der().clone(), self.ca.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok(Issued {
            config: server_config(chain, key)?,
            renew_at: now + LEAF_LIFETIME - LEAF_RENEW_BEFORE,
        })
    }

    fn config_now(&self, name: &str) -> Result<Arc<ServerConfig>, TlsError> {
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(current) = issued.get(name) {
            if current.renew_at > OffsetDateTime::now_utc() {
                return Ok(current.config.clone());
            }
        }
        // Issuing is a key generation and a signature (under a millisecond with ECDSA):
        // done under the lock so concurrent first handshakes share one certificate.
        let fresh = self.issue(name)?;
        let config = fresh.config.clone();
        issued.insert(name.to_string(), fresh);
        Ok(config)
    }
}

impl CertSource for LocalCa {
    fn config_for<'a>(
        &'a self,
        server_name: &'a str,
    ) -> BoxFuture<'a, Result<Arc<ServerConfig>, TlsError>> {
        Box::pin(async move { self.config_now(server_name) })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn the_ca_is_made_once_with_a_private_key_and_issues_per_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = dir.path().join("tls");
        let ca = LocalCa::load_or_create(&tls).expect("ca");
        let first = std::fs::read(ca.cert_path()).expect("cert");
        assert_eq!(
            std::fs::metadata(tls.join("ca.key")).expect("key").mode() & 0o777,
            0o600
        );
        let again = LocalCa::load_or_create(&tls).expect("ca again");
        assert_eq!(std::fs::read(again.cert_path()).expect("cert"), first);

        let a = ca.config_now("a-80.pods.test").expect("issue");
        let a_again = ca.config_now("a-80.pods.test").expect("cached");
        assert!(
            Arc::ptr_eq(&a, &a_again),
            "one certificate per name, cached"
        );
        let b = ca.config_now("b-80.pods.test").expect("issue");
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(a.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    }
}
