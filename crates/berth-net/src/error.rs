//! What can go wrong setting up or tearing down a pod's network, naming the namespace,
//! plugin or file concerned.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("pod network configuration: {0}")]
    Config(String),
    #[error("pod subnet {subnet} overlaps the host route {route} on {device}; choose another with --pod-subnet-v4/--pod-subnet-v6")]
    SubnetOverlap {
        subnet: String,
        route: String,
        device: String,
    },
    #[error("network namespace {name}: {message}")]
    Netns { name: String, message: String },
    #[error("egress rules in {netns}: {message}")]
    Egress { netns: String, message: String },
    #[error("CNI plugin {plugin}: {message}")]
    Plugin { plugin: String, message: String },
    #[error(transparent)]
    Command(#[from] crate::command::CommandError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
