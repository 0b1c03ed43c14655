//! The cluster CA: made on the control plane's first start with `--node-listen` and kept in
//! its state directory (key 0600). It signs the control plane's node port certificate and
//! each worker's client certificate; nothing else trusts it, and it trusts nothing else.

use std::path::Path;
use std::sync::Arc;

use berth_pki::{leaf_params, KeptCa};
use rcgen::{CertificateSigningRequestParams, ExtendedKeyUsagePurpose, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::Duration;

use crate::{fingerprint, ClusterError, CONTROL_PLANE_NAME};

/// A worker's certificate; it joins again with a new token once this ends.
const NODE_LIFETIME: Duration = Duration::days(365);
/// The node port's certificate is issued afresh at every start.
const SERVER_LIFETIME: Duration = Duration::days(30);

pub struct ClusterCa {
    ca: KeptCa,
}

impl ClusterCa {
    /// The CA kept in `dir`, made there (dir 0700, key 0600) if it is not there yet.
    pub fn load_or_create(dir: &Path) -> Result<Self, ClusterError> {
        let name = format!("berth cluster CA ({})", crate::facts::hostname());
        Ok(ClusterCa {
            ca: KeptCa::load_or_create(dir, &name)?,
        })
    }

    pub fn cert_path(&self) -> &Path {
        self.ca.cert_path()
    }

    pub fn cert_pem(&self) -> &str {
        self.ca.cert_pem()
    }

    /// What a join token carries so the worker knows this CA.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.ca.der())
    }

    /// The node port's TLS: a fresh certificate for [`CONTROL_PLANE_NAME`], and client
    /// certificates from this CA checked when sent. A client without one reaches only the
    /// join route; the handlers look at which certificate, if any, a request came with.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, ClusterError> {
        let key = KeyPair::generate()?;
        let mut params = leaf_params(CONTROL_PLANE_NAME, SERVER_LIFETIME)?;
        params.subject_alt_names = vec![rcgen::SanType::DnsName(CONTROL_PLANE_NAME.try_into()?)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, self.ca.issuer())?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone())?;
        let clients = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
            .allow_unauthenticated()
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder()
            .with_client_cert_verifier(clients)
            .with_single_cert(
                vec![cert.der().clone(), self.ca.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Signs a worker's certificate request as `node_id`: the worker shows it to the node
    /// port, and serves its agent port with it under the name `node_id`. Whatever names or
    /// uses the request asks for, the certificate says this and no more.
    pub fn sign_node(&self, csr_pem: &str, node_id: &str) -> Result<String, ClusterError> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| ClusterError::BadRequest(e.to_string()))?;
        csr.params = leaf_params(node_id, NODE_LIFETIME)?;
        csr.params.subject_alt_names = vec![rcgen::SanType::DnsName(node_id.try_into()?)];
        csr.params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        Ok(csr.signed_by(self.ca.issuer())?.pem())
    }

    /// The control plane's certificate for workers' agent ports, issued afresh at every
    /// start: only a certificate for [`CONTROL_PLANE_NAME`] from this CA may command a
    /// worker, and no worker's certificate carries that name.
    pub fn control_plane_identity(&self) -> Result<Identity, ClusterError> {
        let key = KeyPair::generate()?;
        let mut params = leaf_params(CONTROL_PLANE_NAME, SERVER_LIFETIME)?;
        params.subject_alt_names = vec![rcgen::SanType::DnsName(CONTROL_PLANE_NAME.try_into()?)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, self.ca.issuer())?;
        Ok(Identity {
            ca: self.ca.der().clone(),
            cert: cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }
}

/// A certificate from the cluster CA, its key, and the CA that both sides trust.
pub struct Identity {
    pub ca: CertificateDer<'static>,
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Identity {
    /// A client's TLS that shows this certificate and trusts only the cluster CA.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, ClusterError> {
        crate::tls::mutual(self.ca.clone(), self.cert.clone(), self.key.clone_key())
    }
}
