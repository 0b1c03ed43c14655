//! Secret rows: only ciphertext is stored; the key lives in the state directory.

use sqlx::Row;

use sqlx::any::AnyRow;

use super::{corrupt, Store, StoreError};

fn unhex(r: &AnyRow, column: &str) -> Result<Vec<u8>, StoreError> {
    let text: String = r.try_get(column)?;
    hex::decode(&text).map_err(|e| corrupt("secret")(format!("{column}: {e}")))
}

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
            "INSERT INTO secrets (name, nonce, ciphertext, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT(name) DO UPDATE SET nonce = excluded.nonce,
             ciphertext = excluded.ciphertext, created_at = excluded.created_at",
        )
        .bind(name)
        .bind(hex::encode(nonce))
        .bind(hex::encode(ciphertext))
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// (nonce, ciphertext) of the named secret.
    pub async fn secret(&self, name: &str) -> Result<Option<(Vec<u8>, Vec<u8>)>, StoreError> {
        let row = sqlx::query("SELECT nonce, ciphertext FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((unhex(&r, "nonce")?, unhex(&r, "ciphertext")?)))
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
        let done = sqlx::query("DELETE FROM secrets WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
