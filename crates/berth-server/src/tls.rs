//! Which certificates the HTTPS ingress serves, from the server's flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use berth_proxy::tls::{
    Acme, AcmeChallenges, AcmeConfig, CertFiles, CertSource, LocalCa, TlsError,
};

/// Let's Encrypt's production directory: the default for `--acme-email`.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub listen: SocketAddr,
    pub source: TlsSource,
}

#[derive(Debug, Clone)]
pub enum TlsSource {
    /// berth's own CA in `<state>/tls`, a certificate per host name.
    LocalCa,
    /// The operator's certificate chain and key, reloaded when they change.
    Files { cert: PathBuf, key: PathBuf },
    /// Certificates from an ACME directory, per host name.
    Acme {
        directory_url: String,
        email: Option<String>,
        directory_ca: Option<PathBuf>,
    },
}

/// The certificate source, and for the local CA its certificate (for clients to trust).
pub struct Certificates {
    pub source: Arc<dyn CertSource>,
    pub local_ca: Option<PathBuf>,
    pub acme_challenges: Option<Arc<AcmeChallenges>>,
}

pub async fn certificates(
    source: &TlsSource,
    state_dir: &std::path::Path,
) -> Result<Certificates, TlsError> {
    Ok(match source {
        TlsSource::LocalCa => {
            let ca = LocalCa::load_or_create(&state_dir.join("tls"))?;
            let path = ca.cert_path().to_path_buf();
            Certificates {
                source: Arc::new(ca),
                local_ca: Some(path),
                acme_challenges: None,
            }
        }
        TlsSource::Files { cert, key } => Certificates {
            source: Arc::new(CertFiles::load(cert, key)?),
            local_ca: None,
            acme_challenges: None,
        },
        TlsSource::Acme {
            directory_url,
            email,
            directory_ca,
        } => {
            let challenges = Arc::new(AcmeChallenges::default());
            let acme = Acme::new(
                AcmeConfig {
                    directory_url: directory_url.clone(),
                    email: email.clone(),
                    directory_ca: directory_ca.clone(),
                    dir: state_dir.join("acme"),
                },
                challenges.clone(),
            )
            .await?;
            Certificates {
                source: Arc::new(acme),
                local_ca: None,
                acme_challenges: Some(challenges),
            }
        }
    })
}
