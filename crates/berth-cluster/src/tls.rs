//! The worker's TLS to the node port: before it has joined it trusts only a CA whose SHA-256
//! its join token names; after, the CA it saved, with its own certificate to show.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::{fingerprint, ClusterError};

/// What a control plane whose CA is not the token's gets told.
pub const WRONG_CA: &str = "the control plane's CA is not the one the join token names";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn builder() -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, ClusterError> {
    Ok(ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?)
}

/// For joining: the server's chain must hold the CA with `ca_sha256` and be valid under it.
pub fn pinned(ca_sha256: &str) -> Result<ClientConfig, ClusterError> {
    let verifier = PinnedCa {
        sha256: ca_sha256.to_string(),
        provider: provider(),
    };
    let mut config = builder()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// For a joined worker: the saved CA as the only root, and the worker's certificate.
pub fn mutual(
    ca: CertificateDer<'static>,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> Result<ClientConfig, ClusterError> {
    let mut roots = RootCertStore::empty();
    roots.add(ca)?;
    let mut config = builder()?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert], key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[derive(Debug)]
struct PinnedCa {
    sha256: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| fingerprint(c) == self.sha256)
            .ok_or_else(|| rustls::Error::General(WRONG_CA.into()))?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?
            .verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    use super::*;
    use crate::{ClusterCa, CONTROL_PLANE_NAME};

    /// Handshakes `client` against `server` in memory; the fingerprint of the client
    /// certificate the server saw, if any.
    async fn handshake(
        server: Arc<rustls::ServerConfig>,
        client: ClientConfig,
    ) -> Result<Option<String>, String> {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let accept = tokio::spawn(async move { TlsAcceptor::from(server).accept(b).await });
        let name = ServerName::try_from(CONTROL_PLANE_NAME).expect("name");
        let connected = TlsConnector::from(Arc::new(client))
            .connect(name, a)
            .await
            .map_err(|e| e.to_string())?;
        let served = accept.await.expect("join").map_err(|e| e.to_string())?;
        drop(connected);
        Ok(served
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| fingerprint(c)))
    }

    #[tokio::test]
    async fn the_token_pin_tells_the_control_plane_from_an_impostor() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ClusterCa::load_or_create(&dir.path().join("a")).expect("ca");
        let impostor = ClusterCa::load_or_create(&dir.path().join("b")).expect("ca");
        let server = ca.server_config().expect("server");

        let joined = handshake(server.clone(), pinned(&ca.fingerprint()).expect("pin")).await;
        assert_eq!(
            joined,
            Ok(None),
            "a pinned client without a certificate gets in"
        );
        let fooled = handshake(
            impostor.server_config().expect("server"),
            pinned(&ca.fingerprint()).expect("pin"),
        )
        .await;
        assert!(
            fooled.as_ref().is_err_and(|e| e.contains(WRONG_CA)),
            "{fooled:?}"
        );

        // A node certificate signed from a request shows up as the peer; one from another
        // CA is refused.
        let key = rcgen::KeyPair::generate().expect("key");
        let csr = rcgen::CertificateParams::new(vec!["evil.example".to_string()])
            .and_then(|p| p.serialize_request(&key))
            .expect("csr");
        let csr_pem = csr.pem().expect("pem");
        let signed = ca.sign_node(&csr_pem, "node-0123456789ab").expect("sign");
        let client = |cert_pem: &str| {
            mutual(
                CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).expect("ca"),
                CertificateDer::from_pem_slice(cert_pem.as_bytes()).expect("cert"),
                PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).expect("key"),
            )
            .expect("client")
        };
        let cert_der = CertificateDer::from_pem_slice(signed.as_bytes()).expect("cert");
        assert_eq!(
            handshake(server.clone(), client(&signed)).await,
            Ok(Some(fingerprint(&cert_der)))
        );
        let foreign = impostor
            .sign_node(&csr_pem, "node-0123456789ab")
            .expect("sign");
        assert!(handshake(server, client(&foreign)).await.is_err());
        assert!(ca.sign_node("not a request", "node-x").is_err());
    }
}
