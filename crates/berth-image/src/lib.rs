//! Images: references, pulling from registries, the content store and safe layer unpacking.
//!
//! Only this crate talks to registries or reads layer tarballs.

pub mod build;
mod chunk_reader;
mod config;
mod error;
mod layout;
mod oci;
mod pull;
mod reference;
mod store;
mod unpack;

pub use config::ImageConfig;
pub use error::ImageError;
pub use oci::LayerBlob;
pub use pull::{PullOptions, PullProgress, Puller, RegistryCredentials};
pub use reference::{parse_reference, RegistryMirror};
pub use store::{ContentStore, Prune, ResolvedImage};
pub use unpack::{unpack_layer, Compression, PendingLayer, UnpackError};
