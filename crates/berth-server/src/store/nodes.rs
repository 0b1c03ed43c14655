//! Nodes as stored: what each registered, when it last heartbeat, and which containers are
//! placed on it.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{terminal_statuses_sql, Store, StoreError};

/// A node as it registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub id: String,
    pub hostname: String,
    pub cpu_millis: u64,
    pub memory_mib: u64,
    pub runtimes: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub started_at: i64,
    pub heartbeat_at: i64,
    /// A worker's agent port, `HOST:PORT`; `None` for a control plane's own machine.
    pub agent_address: Option<String>,
    /// Pods may be placed on it.
    pub schedulable: bool,
}

/// What the containers placed on one node that have not ended ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeUsage {
    pub pods: u64,
    pub cpu_millis: u64,
    pub memory_mib: u64,
}

impl Store {
    /// Records the node, or what it says of itself now if it registered before.
    pub async fn register_node(&self, node: &NodeRow) -> Result<(), StoreError> {
        let labels = serde_json::to_string(&node.labels).map_err(|e| StoreError::Corrupt {
            what: "node labels",
            detail: e.to_string(),
        })?;
        sqlx::query(
            "INSERT INTO nodes (id, hostname, cpu_millis, memory_mib, runtimes, labels, started_at,
             heartbeat_at, agent_address, schedulable) VALUES ($1, $2, $3, $4, $5, $6, $7, $8,
             $9, $10)
             ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname,
             cpu_millis = excluded.cpu_millis, memory_mib = excluded.memory_mib,
             runtimes = excluded.runtimes, labels = excluded.labels,
             started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,
             agent_address = excluded.agent_address, schedulable = excluded.schedulable",
        )
        .bind(&node.id)
        .bind(&node.hostname)
        .bind(node.cpu_millis as i64)
        .bind(node.memory_mib as i64)
        .bind(node.runtimes.join(","))
        .bind(labels)
        .bind(node.started_at)
        .bind(node.heartbeat_at)
        .bind(&node.agent_address)
        .bind(i64::from(node.schedulable))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a heartbeat; `false` if the node is not registered.
    pub async fn heartbeat_node(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE nodes SET heartbeat_at = $1 WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every registered node, by id.
    pub async fn nodes(&self) -> Result<Vec<NodeRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM nodes ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(node_from_row).collect()
    }

    /// What each node's containers that have not ended ask for, by node id.
    pub async fn node_usage(&self) -> Result<BTreeMap<String, NodeUsage>, StoreError> {
        // SUM of a BIGINT is NUMERIC in PostgreSQL: cast it back for the Any driver.
        let sql = format!(
            "SELECT node_id, COUNT(*) AS pods, CAST(SUM(cpu_millis) AS BIGINT) AS cpu,
             CAST(SUM(memory_mib) AS BIGINT) AS memory FROM containers
             WHERE node_id IS NOT NULL AND status NOT IN ({}) GROUP BY node_id",
            terminal_statuses_sql()
        );
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>("node_id")?,
                    NodeUsage {
                        pods: r.try_get::<i64, _>("pods")? as u64,
                        cpu_millis: r.try_get::<i64, _>("cpu")? as u64,
                        memory_mib: r.try_get::<i64, _>("memory")? as u64,
                    },
                ))
            })
            .collect()
    }

    /// Forgets the node and the certificates signed for it, at once; `false` if there was no
    /// such node.
    pub async fn delete_node(&self, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM node_certs WHERE node_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Places containers recorded before nodes were (a database from an older berth) on
    /// `node_id`, the one machine that ran them; returns how many.
    pub async fn place_unplaced(&self, node_id: &str) -> Result<u64, StoreError> {
        let done = sqlx::query("UPDATE containers SET node_id = $1 WHERE node_id IS NULL")
            .bind(node_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

fn node_from_row(r: &AnyRow) -> Result<NodeRow, StoreError> {
    let labels: String = r.try_get("labels")?;
    Ok(NodeRow {
        id: r.try_get("id")?,
        hostname: r.try_get("hostname")?,
        cpu_millis: r.try_get::<i64, _>("cpu_millis")? as u64,
        memory_mib: r.try_get::<i64, _>("memory_mib")? as u64,
        runtimes: r
            .try_get::<String, _>("runtimes")?
            .split(',')
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .collect(),
        labels: serde_json::from_str(&labels).map_err(|e| StoreError::Corrupt {
            what: "node labels",
            detail: format!("{labels:?}: {e}"),
        })?,
        started_at: r.try_get("started_at")?,
        heartbeat_at: r.try_get("heartbeat_at")?,
        agent_address: r.try_get("agent_address")?,
        schedulable: r.try_get::<i64, _>("schedulable")? != 0,
    })
}

#[cfg(test)]
mod tests {
    use berth_api::ContainerStatus;

    use super::*;
    use crate::store::{testing, ContainerRow};

    fn node(id: &str, at: i64) -> NodeRow {
        NodeRow {
            id: id.into(),
            hostname: "host-a".into(),
            cpu_millis: 2000,
            memory_mib: 24_000,
            runtimes: vec!["runc".into(), "gvisor".into()],
            labels: BTreeMap::from([("pool".into(), "gpu".into())]),
            started_at: at,
            heartbeat_at: at,
            // node-1 is a control plane's own machine, the others workers.
            agent_address: (id != "node-1").then(|| "10.0.0.2:7444".into()),
            schedulable: true,
        }
    }

    #[tokio::test]
    async fn nodes_register_heartbeat_and_count_their_pods() {
        testing::on_both(|store| async move {
            store
                .register_node(&node("node-1", 100))
                .await
                .expect("register");
            assert!(store.heartbeat_node("node-1", 105).await.expect("beat"));
            assert!(!store.heartbeat_node("node-9", 105).await.expect("beat"));
            let mut again = node("node-1", 200);
            again.hostname = "host-b".into();
            store.register_node(&again).await.expect("again");
            store
                .register_node(&node("node-2", 150))
                .await
                .expect("second");
            assert_eq!(
                store.nodes().await.expect("list"),
                [again, node("node-2", 150)]
            );

            store
                .upsert_stub("s1", &testing::spec(), 1)
                .await
                .expect("stub");
            store
                .insert_container(&testing::row("pod-a", "s1"))
                .await
                .expect("insert");
            let big = ContainerRow {
                cpu_millis: 500,
                memory_mib: 1024,
                status: ContainerStatus::Running,
                ..testing::row("pod-b", "s1")
            };
            store.insert_container(&big).await.expect("insert");
            let ended = ContainerRow {
                status: ContainerStatus::Exited,
                ..testing::row("pod-c", "s1")
            };
            store.insert_container(&ended).await.expect("insert");
            let old = ContainerRow {
                node_id: None,
                ..testing::row("pod-d", "s1")
            };
            store.insert_container(&old).await.expect("insert");
            let usage = store.node_usage().await.expect("usage");
            assert_eq!(
                usage,
                BTreeMap::from([(
                    "node-1".to_string(),
                    NodeUsage {
                        pods: 2,
                        cpu_millis: 1500,
                        memory_mib: 1152
                    }
                )])
            );
            let on_node_1 = store
                .active_containers_managed_by("node-1")
                .await
                .expect("on");
            let ids: Vec<&str> = on_node_1.iter().map(|c| c.id.as_str()).collect();
            assert_eq!(ids, ["pod-a", "pod-b"]);
            let on_node_1 = store.active_containers_on("node-1").await.expect("on");
            assert_eq!(on_node_1.len(), 2);
            assert_eq!(store.place_unplaced("node-2").await.expect("place"), 1);
            let mut lost = store.container("pod-d").await.expect("get").expect("row");
            lost.status = ContainerStatus::Lost;
            store.update_container(&lost).await.expect("update");
            let lost_on_2 = store
                .containers_on_in("node-2", ContainerStatus::Lost)
                .await
                .expect("lost");
            assert_eq!(lost_on_2.len(), 1);
            lost.status = ContainerStatus::Running;
            store.update_container(&lost).await.expect("update");
            assert_eq!(store.place_unplaced("node-2").await.expect("place"), 0);
            // A control plane looks after its own pods and those on workers.
            let managed = store
                .active_containers_managed_by("node-1")
                .await
                .expect("managed");
            let mut ids: Vec<&str> = managed.iter().map(|c| c.id.as_str()).collect();
            ids.sort_unstable();
            assert_eq!(ids, ["pod-a", "pod-b", "pod-d"]);
            let usage = store.node_usage().await.expect("usage");
            assert_eq!(usage["node-2"].pods, 1);

            store
                .insert_node_cert("c2", "node-2", 5)
                .await
                .expect("cert");
            assert!(store.delete_node("node-2").await.expect("delete"));
            assert!(!store.delete_node("node-2").await.expect("delete"));
            assert_eq!(store.node_of_cert("c2").await.expect("cert"), None);
            assert_eq!(store.nodes().await.expect("list").len(), 1);
        })
        .await;
    }
}
