//! berth's own certificate authority, for TLS with no domain of one's own (like Caddy's local
//! HTTPS): made on first start and kept in the state directory (key 0600), it issues a
//! certificate per host name at the first handshake that names it. Clients trust the CA once
//! (`berth ca` says how) and every pod URL after that.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;
use time::{Duration, OffsetDateTime};

use super::{server_config, write_atomically, CertSource, TlsError};

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
/// Leaf certificates are short-lived and reissued from memory well before they end.
const LEAF_LIFETIME: Duration = Duration::days(7);
const LEAF_RENEW_BEFORE: Duration = Duration::days(1);
/// A CA outlives many servers; browsers put no cap on a private root's lifetime.
const CA_LIFETIME: Duration = Duration::days(3650);

pub struct LocalCa {
    cert_path: PathBuf,
    ca_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    issued: Mutex<HashMap<String, Issued>>,
}

struct Issued {
    config: Arc<ServerConfig>,
    renew_at: OffsetDateTime,
}

impl LocalCa {
    /// The CA kept in `dir`, made there (dir 0700, key 0600) if it is not there yet.
    pub fn load_or_create(dir: &Path) -> Result<Self, TlsError> {
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| TlsError::Io { what, path, source }
        };
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io("securing", dir))?;
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        // The key is written first and the certificate last: a CA with both files is whole.
        if !cert_path.exists() {
            let key = KeyPair::generate()?;
            let cert = ca_params().self_signed(&key)?;
            write_atomically(&key_path, key.serialize_pem().as_bytes(), 0o600)
                .map_err(io("writing", &key_path))?;
            write_atomically(&cert_path, cert.pem().as_bytes(), 0o644)
                .map_err(io("writing", &cert_path))?;
        }
        let cert_pem = std::fs::read_to_string(&cert_path).map_err(io("reading", &cert_path))?;
        let key_pem = std::fs::read_to_string(&key_path).map_err(io("reading", &key_path))?;
        let bad = |message: String| TlsError::BadPem {
            path: cert_path.clone(),
            message,
        };
        let key = KeyPair::from_pem(&key_pem).map_err(|e| bad(format!("CA key: {e}")))?;
        let ca_der = rustls::pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| bad(format!("CA certificate: {e}")))?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)?;
        Ok(Self {
            cert_path,
            ca_der,
            issuer,
            issued: Mutex::default(),
        })
    }

    /// The CA certificate (PEM) that clients add to their trust stores.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    fn issue(&self, name: &str) -> Result<Issued, TlsError> {
        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::new(vec![name.to_string()])?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        // Backdated a little: a client whose clock lags must not see a future certificate.
        params.not_before = now - Duration::hours(1);
        params.not_after = now + LEAF_LIFETIME;
        params.serial_number = Some(random_serial());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let chain = vec![cert.der().clone(), self.ca_der.clone()];
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

fn ca_params() -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    params
        .distinguished_name
        .push(DnType::CommonName, format!("berth local CA ({host})"));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "berth");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - Duration::hours(1);
    params.not_after = now + CA_LIFETIME;
    params.serial_number = Some(random_serial());
    params
}

fn random_serial() -> SerialNumber {
    // Positive 16-byte serials: unique without bookkeeping.
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
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
            std::fs::metadata(tls.join(CA_KEY)).expect("key").mode() & 0o777,
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
