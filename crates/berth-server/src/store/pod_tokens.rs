//! Scoped tokens for authorized pods: each opens one port of one pod until it expires.

use sqlx::Row;

use super::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodTokenRow {
    pub id: String,
    pub token_hash: String,
    pub container_id: String,
    pub port: u16,
    /// Unix milliseconds.
    pub expires_at: i64,
    pub created_at: i64,
}

impl Store {
    pub async fn insert_pod_token(&self, t: &PodTokenRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO pod_tokens (id, token_hash, container_id, port, expires_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&t.id)
        .bind(&t.token_hash)
        .bind(&t.container_id)
        .bind(i64::from(t.port))
        .bind(t.expires_at)
        .bind(t.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every token not yet expired (expired ones are deleted on the way).
    pub async fn live_pod_tokens(&self, now: i64) -> Result<Vec<PodTokenRow>, StoreError> {
        sqlx::query("DELETE FROM pod_tokens WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        let rows = sqlx::query("SELECT * FROM pod_tokens ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(PodTokenRow {
                    id: r.try_get("id")?,
                    token_hash: r.try_get("token_hash")?,
                    container_id: r.try_get("container_id")?,
                    port: u16::try_from(r.try_get::<i64, _>("port")?).unwrap_or(0),
                    expires_at: r.try_get("expires_at")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Deletes one token of a container; false if it had no such token.
    pub async fn delete_pod_token(&self, container_id: &str, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM pod_tokens WHERE id = $1 AND container_id = $2")
            .bind(id)
            .bind(container_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The sha256 of every API token.
    pub async fn api_token_hashes(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT token_sha256 FROM tokens")
            .fetch_all(&self.pool)
            .await?)
    }
}
