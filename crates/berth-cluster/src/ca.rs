//! The cluster CA: made on the control plane's first start with `--node-listen` and kept in
//! its state directory (key 0600). It signs the control plane's node port certificate and
//! each worker's client certificate; nothing else trusts it, and it trusts nothing else.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use crate::{fingerprint, write_whole, ClusterError, CONTROL_PLANE_NAME};

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca.key";
const CA_LIFETIME: Duration = Duration::days(3650);
/// A worker's certificate; it joins again with a new token once this ends.
const NODE_LIFETIME: Duration = Duration::days(365);
/// The node port's certificate is issued afresh at every start.
const SERVER_LIFETIME: Duration = Duration::days(30);

pub struct ClusterCa {
    cert_path: PathBuf,
    cert_pem: String,
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl ClusterCa {
    /// The CA kept in `dir`, made there (dir 0700, key 0600) if it is not there yet.
    pub fn load_or_create(dir: &Path) -> Result<Self, ClusterError> {
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| ClusterError::Io { what, path, source }
        };
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io("securing", dir))?;
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        // The key first, the certificate last: a CA with both files is whole.
        if !cert_path.exists() {
            let key = KeyPair::generate()?;
            let cert = ca_params().self_signed(&key)?;
            write_whole(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
            write_whole(&cert_path, cert.pem().as_bytes(), 0o644)?;
        }
        let cert_pem = std::fs::read_to_string(&cert_path).map_err(io("reading", &cert_path))?;
        let key_pem = std::fs::read_to_string(&key_path).map_err(io("reading", &key_path))?;
        let bad = |message: String| ClusterError::BadPem {
            path: cert_path.clone(),
            message,
        };
        let key = KeyPair::from_pem(&key_pem).map_err(|e| bad(format!("CA key: {e}")))?;
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| bad(format!("CA certificate: {e}")))?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)?;
        Ok(ClusterCa {
            cert_path,
            cert_pem,
            der,
            issuer,
        })
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// What a join token carries so the worker knows this CA.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.der)
    }

    /// The node port's TLS: a fresh certificate for [`CONTROL_PLANE_NAME`], and client
    /// certificates from this CA checked when sent. A client without one reaches only the
    /// join route; the handlers look at which certificate, if any, a request came with.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, ClusterError> {
        let key = KeyPair::generate()?;
        let mut params = leaf_params(CONTROL_PLANE_NAME, SERVER_LIFETIME)?;
        params.subject_alt_names = vec![rcgen::SanType::DnsName(CONTROL_PLANE_NAME.try_into()?)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer)?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone())?;
        let clients = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
            .allow_unauthenticated()
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder()
            .with_client_cert_verifier(clients)
            .with_single_cert(
                vec![cert.der().clone(), self.der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Signs a worker's certificate request as `node_id`, for client authentication only:
    /// whatever names or uses the request asks for, the certificate says this and no more.
    pub fn sign_node(&self, csr_pem: &str, node_id: &str) -> Result<String, ClusterError> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| ClusterError::BadRequest(e.to_string()))?;
        csr.params = leaf_params(node_id, NODE_LIFETIME)?;
        csr.params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        Ok(csr.signed_by(&self.issuer)?.pem())
    }
}

fn leaf_params(name: &str, lifetime: Duration) -> Result<CertificateParams, ClusterError> {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    // Backdated a little: a peer whose clock lags must not see a future certificate.
    params.not_before = now - Duration::hours(1);
    params.not_after = now + lifetime;
    params.serial_number = Some(random_serial());
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

fn ca_params() -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("berth cluster CA ({})", crate::facts::hostname()),
    );
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
