//! How berth's machines trust each other when workers join a control plane.
//!
//! The control plane keeps a cluster CA of its own (not the ingress CA: browsers trust that
//! one, nodes trust this one). `berth server join-token` mints a short-lived token that also
//! carries the CA's SHA-256, so a worker that has only the token can tell the real control
//! plane from an impostor on its first connection, as kubeadm's discovery hash does. At join
//! the worker sends a certificate request; the control plane signs it with the node's id as
//! its name, and from then on each side proves itself with a certificate from that CA
//! (mutual TLS), the worker by its client certificate, the control plane by a server
//! certificate for [`CONTROL_PLANE_NAME`].

mod agent;
mod ca;
mod credentials;
pub mod facts;
mod tls;
mod token;
mod wire;

pub use agent::{host_port, ControlPlane, JoinError};
pub use ca::{ClusterCa, Identity};
pub use credentials::Credentials;
pub use tls::agent_server;
pub use token::{JoinToken, TokenError};
pub use wire::{JoinRequest, JoinResponse, Registration};

/// The name the control plane's node port certificate carries and workers check, whatever
/// address they reach it at.
pub const CONTROL_PLANE_NAME: &str = "control-plane.berth.internal";

/// How often a node tells the control plane it is alive.
pub const HEARTBEAT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// SHA-256 of a certificate's DER, in lowercase hex: how a node's certificate is known.
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(der))
}

/// An error with its causes, for the TLS reason behind a failed connection.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text = format!("{text}: {next}");
        }
        source = cause.source();
    }
    text
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error(transparent)]
    Pki(#[from] berth_pki::PkiError),
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("{path}: {message}")]
    BadPem {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("the certificate request is not valid: {0}")]
    BadRequest(String),
}
