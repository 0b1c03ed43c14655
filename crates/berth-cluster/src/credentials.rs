//! What a worker keeps once it has joined: where the control plane is, its node id, the
//! cluster CA, and its own certificate and key, in one file readable by root alone.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ClusterError;

const FILE: &str = "cluster-credentials.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    /// The address the worker joined through, `HOST:PORT`.
    pub control_plane: String,
    pub node_id: String,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Credentials {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE)
    }

    /// The saved credentials, or `None` if this worker has not joined yet.
    pub fn load(state_dir: &Path) -> Result<Option<Credentials>, ClusterError> {
        let path = Self::path(state_dir);
        match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| ClusterError::BadPem {
                        path,
                        message: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ClusterError::Io {
                what: "reading",
                path,
                source,
            }),
        }
    }

    /// The worker's certificate and key, with the cluster CA.
    pub fn identity(&self) -> Result<crate::Identity, ClusterError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let bad = |what: &str, e: rustls::pki_types::pem::Error| ClusterError::BadPem {
            path: PathBuf::from(FILE),
            message: format!("{what}: {e}"),
        };
        Ok(crate::Identity {
            ca: CertificateDer::from_pem_slice(self.ca_pem.as_bytes())
                .map_err(|e| bad("ca_pem", e))?,
            cert: CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
                .map_err(|e| bad("cert_pem", e))?,
            key: PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
                .map_err(|e| bad("key_pem", e))?,
        })
    }

    pub fn save(&self, state_dir: &Path) -> Result<(), ClusterError> {
        let text = serde_json::to_vec_pretty(self).map_err(|e| ClusterError::BadPem {
            path: Self::path(state_dir),
            message: e.to_string(),
        })?;
        let path = Self::path(state_dir);
        berth_pki::write_atomically(&path, &text, 0o600).map_err(|source| ClusterError::Io {
            what: "writing",
            path,
            source,
        })
    }
}
