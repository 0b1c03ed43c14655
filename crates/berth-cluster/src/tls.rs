//! The worker's TLS to the node port: before it has joined it trusts only a CA whose SHA-256
//! its join token names; after, the CA it saved, with its own certificate to show.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};

use crate::{fingerprint, ClusterError, CONTROL_PLANE_NAME};

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

/// A worker's agent port: its own certificate, and only the control plane's certificate
/// (from the cluster CA, for [`CONTROL_PLANE_NAME`]) let in; other workers' are refused at
/// the handshake.
pub fn agent_server(
    ca: CertificateDer<'static>,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, ClusterError> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone())?;
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(ControlPlaneOnly { inner }))
        .with_single_cert(vec![cert, ca], key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct ControlPlaneOnly {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for ControlPlaneOnly {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let name = ServerName::try_from(CONTROL_PLANE_NAME)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        webpki::EndEntityCert::try_from(end_entity)
            .and_then(|cert| cert.verify_is_valid_for_subject_name(&name))
            .map_err(|_| {
                rustls::Error::General(
                    "only the control plane may use a worker's agent port".into(),
                )
            })?;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
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

    /// Handshakes a client against a worker's agent port, as the control plane does: by
    /// the worker's node id.
    async fn agent_handshake(
        server: Arc<rustls::ServerConfig>,
        client: ClientConfig,
        node_id: &str,
    ) -> Result<(), String> {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let accept = tokio::spawn(async move { TlsAcceptor::from(server).accept(b).await });
        let name = ServerName::try_from(node_id.to_string()).expect("name");
        let connected = TlsConnector::from(Arc::new(client)).connect(name, a).await;
        let served = accept.await.expect("join");
        connected.map_err(|e| e.to_string())?;
        served.map(drop).map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn only_the_control_plane_commands_a_worker() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ClusterCa::load_or_create(&dir.path().join("a")).expect("ca");
        let impostor = ClusterCa::load_or_create(&dir.path().join("b")).expect("ca");
        let worker = |ca: &ClusterCa, node_id: &str| {
            let key = rcgen::KeyPair::generate().expect("key");
            let csr = rcgen::CertificateParams::new(Vec::<String>::new())
                .and_then(|p| p.serialize_request(&key))
                .expect("csr");
            let signed = ca
                .sign_node(&csr.pem().expect("pem"), node_id)
                .expect("sign");
            crate::Identity {
                ca: CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).expect("ca"),
                cert: CertificateDer::from_pem_slice(signed.as_bytes()).expect("cert"),
                key: PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).expect("key"),
            }
        };
        let a = worker(&ca, "node-aaaaaaaaaaaa");
        let agent = agent_server(a.ca.clone(), a.cert.clone(), a.key.clone_key()).expect("agent");
        let plane = ca.control_plane_identity().expect("identity");

        let ok = agent_handshake(
            agent.clone(),
            plane.client_config().expect("client"),
            "node-aaaaaaaaaaaa",
        )
        .await;
        assert_eq!(ok, Ok(()));
        // Another worker of the same cluster may not command this one.
        let b = worker(&ca, "node-bbbbbbbbbbbb");
        let peer = agent_handshake(
            agent.clone(),
            b.client_config().expect("client"),
            "node-aaaaaaaaaaaa",
        )
        .await;
        assert!(peer.is_err(), "a worker's certificate got in");
        // Nor may another cluster's control plane.
        let foreign = impostor.control_plane_identity().expect("identity");
        let mut foreign_client = foreign.client_config().expect("client");
        // It trusts this cluster's CA for the server, but shows its own certificate.
        foreign_client = {
            let mut roots = RootCertStore::empty();
            roots.add(plane.ca.clone()).expect("root");
            let mut config = ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_client_auth_cert(vec![foreign.cert.clone()], foreign.key.clone_key())
                .expect("client");
            config.alpn_protocols = foreign_client.alpn_protocols.clone();
            config
        };
        assert!(
            agent_handshake(agent.clone(), foreign_client, "node-aaaaaaaaaaaa")
                .await
                .is_err(),
            "another cluster's control plane got in"
        );
        // The control plane checks it reached the worker it meant.
        assert!(
            agent_handshake(
                agent,
                plane.client_config().expect("client"),
                "node-bbbbbbbbbbbb"
            )
            .await
            .is_err(),
            "worker a answered as worker b"
        );
    }
}
