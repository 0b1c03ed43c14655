//! Deployment and version rows. A deploy adds a version in one transaction, and activating
//! a version replaces the previous one in one transaction, so readers never see two active.

use berth_api::{DeploymentStatus, VersionStatus};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{corrupt, ContainerRow, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentRow {
    pub name: String,
    pub status: DeploymentStatus,
    pub active_version: Option<u32>,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRow {
    pub id: String,
    pub name: String,
    pub version: u32,
    pub stub_id: String,
    pub status: VersionStatus,
    pub reason: Option<String>,
    pub container_id: Option<String>,
    pub created_at: i64,
}

fn deployment_status(s: &str) -> Option<DeploymentStatus> {
    match s {
        "ACTIVE" => Some(DeploymentStatus::Active),
        "STOPPED" => Some(DeploymentStatus::Stopped),
        _ => None,
    }
}

fn deployment_status_str(s: DeploymentStatus) -> &'static str {
    match s {
        DeploymentStatus::Active => "ACTIVE",
        DeploymentStatus::Stopped => "STOPPED",
    }
}

fn version_status(s: &str) -> Option<VersionStatus> {
    [
        VersionStatus::Deploying,
        VersionStatus::Active,
        VersionStatus::Replaced,
        VersionStatus::Failed,
    ]
    .into_iter()
    .find(|v| v.as_str() == s)
}

fn deployment_from(r: &AnyRow) -> Result<DeploymentRow, StoreError> {
    let status: String = r.try_get("status")?;
    Ok(DeploymentRow {
        name: r.try_get("name")?,
        status: deployment_status(&status).ok_or_else(|| corrupt("deployment status")(status))?,
        active_version: r
            .try_get::<Option<i64>, _>("active_version")?
            .map(|v| v as u32),
        created_at: r.try_get("created_at")?,
    })
}

fn version_from(r: &AnyRow) -> Result<VersionRow, StoreError> {
    let status: String = r.try_get("status")?;
    Ok(VersionRow {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        version: r.try_get::<i64, _>("version")? as u32,
        stub_id: r.try_get("stub_id")?,
        status: version_status(&status).ok_or_else(|| corrupt("version status")(status))?,
        reason: r.try_get("reason")?,
        container_id: r.try_get("container_id")?,
        created_at: r.try_get("created_at")?,
    })
}

impl Store {
    /// Adds the next version of `name` (creating the deployment on its first deploy, and
    /// making a stopped one active again), as DEPLOYING.
    pub async fn add_version(
        &self,
        name: &str,
        stub_id: &str,
        now: i64,
    ) -> Result<VersionRow, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO deployments (name, status, active_version, created_at)
             VALUES ($1, 'ACTIVE', NULL, $2)
             ON CONFLICT(name) DO UPDATE SET status = 'ACTIVE'",
        )
        .bind(name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let last: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM deployment_versions WHERE name = $1")
                .bind(name)
                .fetch_one(&mut *tx)
                .await?;
        let version = last.unwrap_or(0) as u32 + 1;
        let row = VersionRow {
            id: format!("{name}-v{version}"),
            name: name.to_string(),
            version,
            stub_id: stub_id.to_string(),
            status: VersionStatus::Deploying,
            reason: None,
            container_id: None,
            created_at: now,
        };
        sqlx::query(
            "INSERT INTO deployment_versions (id, name, version, stub_id, status, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&row.id)
        .bind(name)
        .bind(version as i64)
        .bind(stub_id)
        .bind(row.status.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    pub async fn set_version_container(
        &self,
        version_id: &str,
        container_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE deployment_versions SET container_id = $1 WHERE id = $2")
            .bind(container_id)
            .bind(version_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Makes `version` the one served; the one it replaces becomes REPLACED.
    pub async fn activate_version(&self, name: &str, version: u32) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE deployment_versions SET status = 'REPLACED'
             WHERE name = $1 AND status = 'ACTIVE' AND version != $2",
        )
        .bind(name)
        .bind(version as i64)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE deployment_versions SET status = 'ACTIVE' WHERE name = $1 AND version = $2",
        )
        .bind(name)
        .bind(version as i64)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE deployments SET active_version = $1 WHERE name = $2")
            .bind(version as i64)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn fail_version(&self, version_id: &str, reason: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE deployment_versions SET status = 'FAILED', reason = $1 WHERE id = $2")
            .bind(reason)
            .bind(version_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_deployment_status(
        &self,
        name: &str,
        status: DeploymentStatus,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE deployments SET status = $1 WHERE name = $2")
            .bind(deployment_status_str(status))
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn delete_deployment(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM deployments WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn deployment(&self, name: &str) -> Result<Option<DeploymentRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM deployments WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| deployment_from(&r)).transpose()
    }

    pub async fn deployments(&self) -> Result<Vec<DeploymentRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM deployments ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(deployment_from).collect()
    }

    /// The deployment's versions, newest first.
    pub async fn versions(&self, name: &str) -> Result<Vec<VersionRow>, StoreError> {
        let rows =
            sqlx::query("SELECT * FROM deployment_versions WHERE name = $1 ORDER BY version DESC")
                .bind(name)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(version_from).collect()
    }

    /// Containers of any version of the deployment that have not ended, newest first.
    pub async fn deployment_containers(&self, name: &str) -> Result<Vec<ContainerRow>, StoreError> {
        let sql = format!(
            "SELECT * FROM containers WHERE deployment_id IN
             (SELECT id FROM deployment_versions WHERE name = $1)
             AND status NOT IN ({}) ORDER BY scheduled_at DESC, id",
            super::terminal_statuses_sql()
        );
        let rows = sqlx::query(&sql).bind(name).fetch_all(&self.pool).await?;
        rows.iter().map(super::from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::PodSpec;

    #[tokio::test]
    async fn versions_count_up_and_one_is_active() {
        crate::store::testing::on_both(versions_count_up).await;
    }

    async fn versions_count_up(store: Store) {
        let spec: PodSpec = PodSpec::validate(
            serde_json::from_value(serde_json::json!({"image": "busybox"})).expect("req"),
        )
        .expect("spec");
        store.upsert_stub("s", &spec, 1).await.expect("stub");
        let v1 = store.add_version("web", "s", 1).await.expect("v1");
        let v2 = store.add_version("web", "s", 2).await.expect("v2");
        assert_eq!((v1.id.as_str(), v2.version), ("web-v1", 2));
        store.activate_version("web", 1).await.expect("activate");
        store.activate_version("web", 2).await.expect("activate");
        let versions = store.versions("web").await.expect("versions");
        let statuses: Vec<_> = versions.iter().map(|v| v.status).collect();
        assert_eq!(statuses, [VersionStatus::Active, VersionStatus::Replaced]);
        let d = store.deployment("web").await.expect("get").expect("some");
        assert_eq!(d.active_version, Some(2));
        assert!(store.delete_deployment("web").await.expect("delete"));
        assert!(store.versions("web").await.expect("versions").is_empty());
    }
}
