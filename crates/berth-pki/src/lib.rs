//! A certificate authority kept in a directory: made on first use (the directory 0700, the
//! key 0600, written before the certificate so a CA with both files is whole), loaded after.
//! berth keeps two, each trusted by different clients: the ingress's local CA (browsers,
//! `berth ca`) and the cluster CA (workers and the node port).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
/// A CA outlives many servers; browsers put no cap on a private root's lifetime.
const CA_LIFETIME: Duration = Duration::days(3650);

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    BadPem { path: PathBuf, message: String },
    #[error("making a certificate: {0}")]
    Cert(#[from] rcgen::Error),
}

pub struct KeptCa {
    cert_path: PathBuf,
    cert_pem: String,
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl KeptCa {
    /// The CA kept in `dir`, made there and named `common_name` if it is not there yet.
    pub fn load_or_create(dir: &Path, common_name: &str) -> Result<Self, PkiError> {
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| PkiError::Io { what, path, source }
        };
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io("securing", dir))?;
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        if !cert_path.exists() {
            let key = KeyPair::generate()?;
            let cert = ca_params(common_name).self_signed(&key)?;
            write_atomically(&key_path, key.serialize_pem().as_bytes(), 0o600)
                .map_err(io("writing", &key_path))?;
            write_atomically(&cert_path, cert.pem().as_bytes(), 0o644)
                .map_err(io("writing", &cert_path))?;
        }
        let cert_pem = std::fs::read_to_string(&cert_path).map_err(io("reading", &cert_path))?;
        let key_pem = std::fs::read_to_string(&key_path).map_err(io("reading", &key_path))?;
        let bad = |message: String| PkiError::BadPem {
            path: cert_path.clone(),
            message,
        };
        let key = KeyPair::from_pem(&key_pem).map_err(|e| bad(format!("CA key: {e}")))?;
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| bad(format!("CA certificate: {e}")))?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)?;
        Ok(KeptCa {
            cert_path,
            cert_pem,
            der,
            issuer,
        })
    }

    /// The CA certificate (PEM), for clients to trust.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn der(&self) -> &CertificateDer<'static> {
        &self.der
    }

    /// What signs the certificates this CA issues.
    pub fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }
}

/// A leaf certificate's parameters: `common_name`, valid from an hour ago (a peer whose
/// clock lags must not see a future certificate) for `lifetime`, a random serial, for
/// signatures; the caller adds names and uses.
pub fn leaf_params(common_name: &str, lifetime: Duration) -> Result<CertificateParams, PkiError> {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.not_before = now - Duration::hours(1);
    params.not_after = now + lifetime;
    params.serial_number = Some(random_serial());
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn ca_params(common_name: &str) -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
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

/// Positive 16-byte serials: unique without bookkeeping.
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

/// Writes `data` to `path` with `mode` through a temporary file and a rename, so a reader
/// (or the next start after a crash) sees the old file or the whole new one.
pub fn write_atomically(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    file.write_all(data)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn the_ca_is_made_once_with_a_private_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kept = dir.path().join("ca");
        let ca = KeptCa::load_or_create(&kept, "test CA").expect("ca");
        assert_eq!(
            std::fs::metadata(kept.join(CA_KEY)).expect("key").mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::metadata(&kept).expect("dir").mode() & 0o777, 0o700);
        let again = KeptCa::load_or_create(&kept, "another name").expect("ca again");
        assert_eq!(again.cert_pem(), ca.cert_pem());
        std::fs::write(kept.join(CA_KEY), "junk").expect("write");
        assert!(matches!(
            KeptCa::load_or_create(&kept, "test CA"),
            Err(PkiError::BadPem { .. })
        ));
    }
}
