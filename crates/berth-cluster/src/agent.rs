//! The worker's side of the node port: join with a token, then register and heartbeat with
//! its certificate.

use std::net::SocketAddr;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::de::DeserializeOwned;

use crate::{
    fingerprint, tls, ClusterError, Credentials, JoinRequest, JoinResponse, JoinToken,
    Registration, TokenError, CONTROL_PLANE_NAME,
};

/// A request to the node port that takes longer than this has failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("the control plane address {0:?} is not HOST:PORT or https://HOST:PORT")]
    Address(String),
    #[error("reaching the control plane at {address}: {message}")]
    Unreachable { address: String, message: String },
    #[error("the control plane refused ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("the control plane's answer: {0}")]
    BadAnswer(String),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
}

/// A worker's connection to the control plane's node port.
pub struct ControlPlane {
    http: reqwest::Client,
    base: String,
    address: String,
}

impl ControlPlane {
    /// Joins with `token` through `address`, returning the credentials to save. The
    /// worker's key is made here and only a request for it is sent.
    pub async fn join(address: &str, token: &JoinToken) -> Result<Credentials, JoinError> {
        let address = host_port(address)?;
        let plane = ControlPlane::new(&address, tls::pinned(&token.ca_sha256)?).await?;
        let key = rcgen::KeyPair::generate().map_err(ClusterError::from)?;
        let csr = rcgen::CertificateParams::new(Vec::<String>::new())
            .and_then(|p| p.serialize_request(&key))
            .map_err(ClusterError::from)?;
        let joined: JoinResponse = plane
            .post(
                "/v1/cluster/join",
                &JoinRequest {
                    token_id: token.id.clone(),
                    secret: token.secret.clone(),
                    csr_pem: csr.pem().map_err(ClusterError::from)?,
                },
            )
            .await?;
        let ca = pem_cert(&joined.ca_pem)?;
        if fingerprint(&ca) != token.ca_sha256 {
            return Err(JoinError::BadAnswer(tls::WRONG_CA.into()));
        }
        Ok(Credentials {
            control_plane: address,
            node_id: joined.node_id,
            ca_pem: joined.ca_pem,
            cert_pem: joined.cert_pem,
            key_pem: key.serialize_pem(),
        })
    }

    /// A connection that shows the worker's certificate.
    pub async fn connect(credentials: &Credentials) -> Result<ControlPlane, JoinError> {
        let key = PrivateKeyDer::from_pem_slice(credentials.key_pem.as_bytes())
            .map_err(|e| JoinError::BadAnswer(format!("the saved key: {e}")))?;
        let config = tls::mutual(
            pem_cert(&credentials.ca_pem)?,
            pem_cert(&credentials.cert_pem)?,
            key,
        )?;
        ControlPlane::new(&credentials.control_plane, config).await
    }

    async fn new(address: &str, tls: rustls::ClientConfig) -> Result<ControlPlane, JoinError> {
        let unreachable = |message: String| JoinError::Unreachable {
            address: address.to_string(),
            message,
        };
        let addr: SocketAddr = tokio::net::lookup_host(address)
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .next()
            .ok_or_else(|| unreachable("the name has no address".into()))?;
        // The node port's certificate names the control plane, not an address: reach it
        // at `addr` under that name.
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .resolve(CONTROL_PLANE_NAME, addr)
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| unreachable(crate::error_chain(&e)))?;
        Ok(ControlPlane {
            http,
            base: format!("https://{CONTROL_PLANE_NAME}:{}", addr.port()),
            address: address.to_string(),
        })
    }

    /// Tells the control plane what this worker offers; the node id comes from its
    /// certificate.
    pub async fn register(&self, registration: &Registration) -> Result<(), JoinError> {
        self.post::<serde_json::Value>("/v1/cluster/register", registration)
            .await
            .map(drop)
    }

    pub async fn heartbeat(&self) -> Result<(), JoinError> {
        self.post::<serde_json::Value>("/v1/cluster/heartbeat", &serde_json::json!({}))
            .await
            .map(drop)
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, JoinError> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .map_err(|e| JoinError::Unreachable {
                address: self.address.clone(),
                message: crate::error_chain(&e),
            })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| JoinError::BadAnswer(crate::error_chain(&e)))?;
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
                .unwrap_or(text);
            return Err(JoinError::Refused {
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_str(&text).map_err(|e| JoinError::BadAnswer(e.to_string()))
    }
}

/// `https://HOST:PORT`, `HOST:PORT` or `[V6]:PORT` as `HOST:PORT`.
pub fn host_port(address: &str) -> Result<String, JoinError> {
    let rest = address.strip_prefix("https://").unwrap_or(address);
    let rest = rest.trim_end_matches('/');
    let valid = rest
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
        && !rest.contains('/')
        && !rest.contains('@');
    if valid {
        Ok(rest.to_string())
    } else {
        Err(JoinError::Address(address.to_string()))
    }
}

fn pem_cert(pem: &str) -> Result<CertificateDer<'static>, JoinError> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| JoinError::BadAnswer(format!("a certificate: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_host_and_port() {
        assert_eq!(
            host_port("https://10.0.0.1:7443/").ok(),
            Some("10.0.0.1:7443".into())
        );
        assert_eq!(
            host_port("cp.example:7443").ok(),
            Some("cp.example:7443".into())
        );
        assert_eq!(
            host_port("[fd00::1]:7443").ok(),
            Some("[fd00::1]:7443".into())
        );
        for bad in [
            "10.0.0.1",
            "https://10.0.0.1:0",
            "a:b",
            "u@h:1",
            "h:1/x",
            ":7443",
        ] {
            assert!(host_port(bad).is_err(), "{bad:?}");
        }
    }
}
