//! Images as a service of the control plane: builds, the node's image list, and pruning
//! with the keep-set taken from the stubs the store knows.

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use berth_api::{ImageSource, ImageSummary, PruneResult};

use crate::node::{BuildImage, BuiltImage, Node, NodeError, ProgressFn};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ImagesError {
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Images<N: Node> {
    node: N,
    store: Store,
    /// One permit per build in flight.
    build_slots: Arc<tokio::sync::Semaphore>,
    max_builds: usize,
}

impl<N: Node> Images<N> {
    pub fn new(node: N, store: Store, max_builds: usize) -> Self {
        Images {
            node,
            store,
            build_slots: Arc::new(tokio::sync::Semaphore::new(max_builds.max(1))),
            max_builds,
        }
    }

    /// A place for one more build, held until it ends; `Err` with the limit when all are
    /// taken.
    pub fn build_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, usize> {
        self.build_slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| self.max_builds)
    }

    pub async fn build(
        &self,
        req: BuildImage,
        log: ProgressFn,
        cancelled: Arc<AtomicBool>,
    ) -> Result<BuiltImage, NodeError> {
        self.node.build(req, log, cancelled).await
    }

    pub async fn list(&self) -> Vec<ImageSummary> {
        self.node.images().await
    }

    /// Drops pulled images that no stub uses and layers nothing references; built images
    /// and their layers are the build cache and stay.
    pub async fn prune(&self) -> Result<PruneResult, ImagesError> {
        let keep = keep_set(&self.store.stub_specs().await?);
        Ok(self.node.prune(keep).await)
    }
}

/// The images stubs refer to: their reference, or the base a build starts from.
fn keep_set(specs: &[crate::spec::PodSpec]) -> HashSet<String> {
    specs
        .iter()
        .filter_map(|spec| match &spec.image {
            ImageSource::Reference(r) => Some(r.clone()),
            ImageSource::Spec(s) => s.base_image.clone(),
        })
        .filter_map(|name| berth_image::parse_reference(&name).ok())
        .map(|reference| reference.whole())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::PodSpec;

    fn spec(image: ImageSource) -> PodSpec {
        PodSpec {
            image,
            ports: vec![],
            cpu_millis: 1000,
            memory_mib: 64,
            env: Default::default(),
            entrypoint: None,
            keep_warm_seconds: 0,
            volumes: vec![],
            secrets: vec![],
            code: None,
            workdir: None,
            authorized: false,
            runtime: None,
            block_network: false,
            allow_list: vec![],
            read_only_rootfs: false,
            privileged_user: false,
            disk_mib: None,
            init: true,
            stop_signal: None,
            stop_grace_seconds: None,
        }
    }

    #[test]
    fn stubs_keep_their_image_or_their_build_base() {
        let build: berth_api::ImageSpec =
            serde_json::from_value(serde_json::json!({"base_image": "debian:12"})).expect("spec");
        let keep = keep_set(&[
            spec(ImageSource::Reference("busybox".into())),
            spec(ImageSource::Spec(build)),
            spec(ImageSource::Spec(Default::default())),
        ]);
        assert_eq!(keep.len(), 2);
        assert!(keep.contains("docker.io/library/busybox:latest"));
        assert!(keep.contains("docker.io/library/debian:12"));
    }
}
