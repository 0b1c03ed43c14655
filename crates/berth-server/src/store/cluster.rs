//! Join tokens and node certificates as stored.

use super::{Store, StoreError};

impl Store {
    pub async fn insert_join_token(
        &self,
        id: &str,
        secret_sha256: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO join_tokens (id, secret_sha256, expires_at, created_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(secret_sha256)
        .bind(expires_at)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The token's secret hash and expiry, if there is such a token.
    pub async fn join_token(&self, id: &str) -> Result<Option<(String, i64)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT secret_sha256, expires_at FROM join_tokens WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Forgets tokens that ended before `now`; returns how many.
    pub async fn delete_expired_join_tokens(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM join_tokens WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    pub async fn insert_node_cert(
        &self,
        cert_sha256: &str,
        node_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO node_certs (cert_sha256, node_id, created_at) VALUES ($1, $2, $3)",
        )
        .bind(cert_sha256)
        .bind(node_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The node a certificate was signed for.
    pub async fn node_of_cert(&self, cert_sha256: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT node_id FROM node_certs WHERE cert_sha256 = $1")
                .bind(cert_sha256)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::store::testing;

    #[tokio::test]
    async fn join_tokens_expire_and_certificates_name_their_node() {
        testing::on_both(|store| async move {
            store
                .insert_join_token("0a0b0c0d", "hash", 200, 100)
                .await
                .expect("insert");
            assert_eq!(
                store.join_token("0a0b0c0d").await.expect("get"),
                Some(("hash".to_string(), 200))
            );
            assert_eq!(store.join_token("ffffffff").await.expect("get"), None);
            assert_eq!(store.delete_expired_join_tokens(200).await.expect("gc"), 0);
            assert_eq!(store.delete_expired_join_tokens(201).await.expect("gc"), 1);
            assert_eq!(store.join_token("0a0b0c0d").await.expect("get"), None);

            store
                .insert_node_cert("c1", "node-1", 5)
                .await
                .expect("cert");
            assert_eq!(
                store.node_of_cert("c1").await.expect("get").as_deref(),
                Some("node-1")
            );
            assert_eq!(store.node_of_cert("c2").await.expect("get"), None);
        })
        .await;
    }
}
