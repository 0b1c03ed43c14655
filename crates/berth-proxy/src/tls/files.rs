//! A certificate and key the operator gives (a wildcard for `*.<domain>`, say), reloaded when
//! either file changes so a renewal by certbot or a secret manager needs no restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::BoxFuture;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use super::{server_config, CertSource, TlsError};

/// How often a handshake may look at the files' modification times.
const RECHECK: Duration = Duration::from_secs(1);

pub struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    state: Mutex<Loaded>,
}

struct Loaded {
    stamp: Stamp,
    config: Arc<ServerConfig>,
    checked: Instant,
}

/// What tells a changed file apart: modification time and size of both files.
type Stamp = [(SystemTime, u64); 2];

impl CertFiles {
    /// Loads the pair now: a server must not start with a certificate it cannot serve.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let (stamp, config) = read_pair(cert, key)?;
        Ok(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            state: Mutex::new(Loaded {
                stamp,
                config,
                checked: Instant::now(),
            }),
        })
    }

    fn current(&self) -> Arc<ServerConfig> {
        let mut loaded = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if loaded.checked.elapsed() >= RECHECK {
            loaded.checked = Instant::now();
            match stamp(&self.cert, &self.key) {
                Ok(now) if now != loaded.stamp => match read_pair(&self.cert, &self.key) {
                    Ok((stamp, config)) => {
                        tracing::info!("reloaded TLS certificate {}", self.cert.display());
                        loaded.stamp = stamp;
                        loaded.config = config;
                    }
                    // Caught between the writes of the certificate and the key, most
                    // likely: keep serving the old pair and look again soon.
                    Err(e) => tracing::warn!("TLS certificate not reloaded: {e}"),
                },
                Ok(_) => {}
                Err(e) => tracing::warn!("TLS certificate not reloaded: {e}"),
            }
        }
        loaded.config.clone()
    }
}

impl CertSource for CertFiles {
    fn config_for<'a>(
        &'a self,
        _server_name: &'a str,
    ) -> BoxFuture<'a, Result<Arc<ServerConfig>, TlsError>> {
        Box::pin(async move { Ok(self.current()) })
    }
}

fn stamp(cert: &Path, key: &Path) -> Result<Stamp, TlsError> {
    let one = |path: &Path| {
        let meta = std::fs::metadata(path).map_err(|source| TlsError::Io {
            what: "reading",
            path: path.to_path_buf(),
            source,
        })?;
        Ok::<_, TlsError>((
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            meta.len(),
        ))
    };
    Ok([one(cert)?, one(key)?])
}

fn read_pair(cert: &Path, key: &Path) -> Result<(Stamp, Arc<ServerConfig>), TlsError> {
    let stamp = stamp(cert, key)?;
    let bad = |path: &Path, message: String| TlsError::BadPem {
        path: path.to_path_buf(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(cert, "no CERTIFICATE block".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
    Ok((stamp, server_config(chain, key_der)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_changed_pair_is_picked_up_and_a_broken_one_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let (c1, k1) = self_signed("one.test");
        std::fs::write(&cert, &c1).expect("write");
        std::fs::write(&key, &k1).expect("write");
        let files = CertFiles::load(&cert, &key).expect("load");
        let first = files.current();

        let (c2, k2) = self_signed("second-name.test");
        std::fs::write(&cert, &c2).expect("write");
        std::fs::write(&key, &k2).expect("write");
        files.state.lock().expect("lock").checked -= RECHECK;
        let second = files.current();
        assert!(!Arc::ptr_eq(&first, &second), "the new pair is served");

        std::fs::write(&cert, "not a certificate, longer than before").expect("write");
        files.state.lock().expect("lock").checked -= RECHECK;
        assert!(
            Arc::ptr_eq(&second, &files.current()),
            "a broken pair is not"
        );

        std::fs::remove_file(&key).expect("rm");
        assert!(CertFiles::load(&cert, &key).is_err());
    }
}
