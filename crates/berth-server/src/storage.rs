//! What pods keep on the node besides images: uploaded code and named volumes, as a service
//! of the control plane (the store knows which running pods use a volume).

use berth_api::{CodeUploaded, Volume};
use bytes::Bytes;

use crate::node::{Node, NodeError};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no volume named {0}")]
    NoVolume(String),
    #[error("volume {volume} is in use by {container}; stop it first")]
    InUse { volume: String, container: String },
}

pub struct Storage<N: Node> {
    node: N,
    store: Store,
}

impl<N: Node> Storage<N> {
    pub fn new(node: N, store: Store) -> Self {
        Storage { node, store }
    }

    pub async fn put_code(
        &self,
        digest: String,
        archive: Bytes,
    ) -> Result<CodeUploaded, StorageError> {
        Ok(self.node.put_code(digest, archive).await?)
    }

    pub fn has_code(&self, digest: &str) -> bool {
        self.node.has_code(digest)
    }

    pub async fn volumes(&self) -> Result<Vec<Volume>, StorageError> {
        Ok(self.node.volumes().await?)
    }

    /// Deletes a volume no live container mounts.
    pub async fn delete_volume(&self, name: &str) -> Result<(), StorageError> {
        for row in self.store.containers(true).await? {
            let uses = self
                .store
                .stub_spec(&row.stub_id)
                .await?
                .is_some_and(|spec| spec.volumes.iter().any(|v| v.name == name));
            if uses {
                return Err(StorageError::InUse {
                    volume: name.to_string(),
                    container: row.id,
                });
            }
        }
        if self.node.delete_volume(name).await? {
            Ok(())
        } else {
            Err(StorageError::NoVolume(name.to_string()))
        }
    }
}
