//! Conda packages for images, without conda: specs and channels checked, solved against
//! the channels' repodata, and installed into a prefix, all with the conda ecosystem's own
//! Rust libraries (rattler). Nothing here runs a conda or micromamba binary, so an image
//! needs neither.
//!
//! A solve gives a [`Lock`]: the exact package files, as text that goes into a build step's
//! cache key (a new package in a channel is a new key) and back into [`Conda::install`].

mod check;
mod install;
mod solve;

pub use check::{check_channel, check_spec};
pub use solve::{Lock, System};

use std::path::PathBuf;

/// Where conda packages go in an image; its `bin` goes first on the image's PATH.
pub const PREFIX: &str = "/opt/conda";

/// The channel when none is given.
pub const DEFAULT_CHANNEL: &str = "conda-forge";

#[derive(Debug, thiserror::Error)]
pub enum CondaError {
    #[error("conda package {spec:?}: {problem}")]
    BadSpec { spec: String, problem: String },
    #[error("conda channel {channel:?}: {problem}")]
    BadChannel { channel: String, problem: String },
    #[error("reading the conda channels {channels}: {detail}")]
    Channels { channels: String, detail: String },
    #[error("no conda package named {name} in {channels}")]
    NotFound { name: String, channels: String },
    #[error("cannot solve the conda packages {specs}: {detail}")]
    Unsolvable { specs: String, detail: String },
    #[error("installing the conda packages: {0}")]
    Install(String),
    #[error("the conda solution is unreadable: {0}")]
    BadLock(String),
    #[error("setting up the HTTP client for conda channels: {0}")]
    Client(String),
}

/// Solves and installs conda packages, with a download cache of its own.
pub struct Conda {
    http: reqwest::Client,
    cache: PathBuf,
}

impl Conda {
    /// `cache` holds fetched repodata and package archives; it may be shared by builds.
    pub fn new(cache: PathBuf) -> Result<Self, CondaError> {
        // rustls with the host's trust store (and SSL_CERT_FILE), and the proxy the
        // environment names: how the server reaches registries too.
        let http = reqwest::Client::builder()
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CondaError::Client(e.to_string()))?;
        Ok(Conda { http, cache })
    }
}

/// One line from text that may hold several (resolvo's reports do).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
