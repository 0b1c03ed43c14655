//! Secret rows: only ciphertext is stored; the key lives in the state directory.

use sqlx::Row;

use super::{Store, StoreError};

impl Store {
    /// Writes (or replaces) the named secret's ciphertext.
    pub async fn put_secret(
        &self,
        name: &str,
        nonce: &[u8],
        ciphertext: &[u8],
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO secrets (name, nonce, ciphertext, created_at) VALUES (?, ?, ?, ?)
             ON CONFLICT(name) DO UPDATE SET nonce = excluded.nonce,
             ciphertext = excluded.ciphertext, created_at = excluded.created_at",
        )
        .bind(name)
        .bind(nonce)
        .bind(ciphertext)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// (nonce, ciphertext) of the named secret.
    pub async fn secret(&self, name: &str) -> Result<Option<(Vec<u8>, Vec<u8>)>, StoreError> {
        let row = sqlx::query("SELECT nonce, ciphertext FROM secrets WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get("nonce")?, r.try_get("ciphertext")?)))
            .transpose()
    }

    /// (name, created_at) of every secret, by name.
    pub async fn secret_names(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT name, created_at FROM secrets ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("created_at")?)))
            .collect()
    }

    pub async fn delete_secret(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM secrets WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
