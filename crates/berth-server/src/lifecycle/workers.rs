//! The control plane's watch over its workers: the pods of a worker that has gone silent
//! are LOST, and a worker that answers is told to stop what the control plane no longer
//! wants (pods marked LOST while it was away, or ended while it could not be told), so a
//! partition heals without duplicates.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use berth_api::ContainerStatus;

use super::{now, Lifecycle, LifecycleError};
use crate::node::Node;

/// How often the workers are looked at.
pub(super) const WORKER_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// A worker not heard from for this long has its pods marked LOST: four missed heartbeats.
const LOST_AFTER_SECONDS: i64 = 20;
/// What a container the control plane no longer wants gets between SIGTERM and SIGKILL.
const UNWANTED_GRACE: Duration = Duration::from_secs(5);

impl<N: Node> Lifecycle<N> {
    /// Marks the pods of silent workers LOST and reconciles the workers that answer.
    pub(super) async fn check_workers(self: &Arc<Self>) -> Result<(), LifecycleError> {
        let at = now();
        for node in self.store.nodes().await? {
            if node.agent_address.is_none() || node.id == self.config.node_id {
                continue;
            }
            let silent = at - node.heartbeat_at;
            if silent > LOST_AFTER_SECONDS {
                self.mark_lost(&node.id, silent).await?;
                self.down_workers_lock().insert(node.id);
                continue;
            }
            if !crate::nodes::is_up(node.heartbeat_at, at) {
                continue;
            }
            let Some(member) = self.node.member(&node.id) else {
                continue;
            };
            let back = self.down_workers_lock().remove(&node.id);
            self.reconcile(&node.id, &member, back).await;
        }
        Ok(())
    }

    async fn mark_lost(self: &Arc<Self>, node_id: &str, silent: i64) -> Result<(), LifecycleError> {
        for row in self.store.active_containers_on(node_id).await? {
            // A stop in flight records its own end.
            if !self.claim(&row.id) {
                continue;
            }
            self.routes.remove(&row.id);
            self.activities_lock().remove(&row.id);
            self.clear_progress(&row.id);
            let reason = format!(
                "its node {node_id} has not been heard from for {silent} s; it is stopped \
                 there if the node comes back"
            );
            let _ = self
                .transition(&row.id, ContainerStatus::Lost, |r| {
                    r.reason = Some(reason);
                    r.finished_at = Some(now());
                })
                .await;
            self.release(&row.id);
        }
        Ok(())
    }

    /// Stops and tears down, on `node`, the containers it runs that the control plane no
    /// longer wants; once it is `back` from being lost, tears down its LOST ones too.
    async fn reconcile(&self, node_id: &str, node: &N, back: bool) {
        let running = match node.running_containers().await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(node = %node_id, "reconcile: {e}");
                return;
            }
        };
        let mut done = HashSet::new();
        for id in running {
            let wanted = match self.store.container(&id).await {
                Ok(Some(row)) => !row.status.is_terminal(),
                Ok(None) => false,
                // The store is away: leave the container be rather than guess.
                Err(_) => true,
            };
            if wanted {
                continue;
            }
            tracing::warn!(container = %id, node = %node_id, "stopping a container the control plane no longer wants");
            node.stop(&id, berth_api::DEFAULT_STOP_SIGNAL, UNWANTED_GRACE)
                .await;
            if let Err(e) = node.teardown(&id).await {
                tracing::warn!(container = %id, node = %node_id, "teardown: {e}");
            }
            done.insert(id);
        }
        if !back {
            return;
        }
        tracing::info!(node = %node_id, "the worker is back; tearing down its lost pods");
        let lost = self
            .store
            .containers_on_in(node_id, ContainerStatus::Lost)
            .await
            .unwrap_or_default();
        for row in lost.into_iter().filter(|r| !done.contains(&r.id)) {
            if let Err(e) = node.teardown(&row.id).await {
                tracing::warn!(container = %row.id, node = %node_id, "teardown: {e}");
            }
        }
    }

    fn down_workers_lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.down_workers.lock().unwrap_or_else(|p| p.into_inner())
    }
}
