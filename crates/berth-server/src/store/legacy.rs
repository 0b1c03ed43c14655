//! Databases written by berth before its schema was portable: their first three migrations
//! are recorded under the checksums of `migrations-legacy/`. This brings such a SQLite file
//! to the portable schema in place, once, before the migrator checks the checksums.

use sha2::{Digest, Sha384};
use sqlx::migrate::Migrator;
use sqlx::AnyPool;

use super::StoreError;

/// The migrations whose text changed, as first applied.
const LEGACY: [(i64, &str); 3] = [
    (1, include_str!("../../migrations-legacy/0001_init.sql")),
    (
        2,
        include_str!("../../migrations-legacy/0002_deployments_secrets.sql"),
    ),
    (
        3,
        include_str!("../../migrations-legacy/0003_pod_access.sql"),
    ),
];

/// Secrets were BLOBs; the portable schema keeps them as hex text.
const SECRETS_TO_HEX: [&str; 4] = [
    "CREATE TABLE secrets_hex (
        name TEXT PRIMARY KEY,
        nonce TEXT NOT NULL,
        ciphertext TEXT NOT NULL,
        created_at BIGINT NOT NULL
    )",
    "INSERT INTO secrets_hex (name, nonce, ciphertext, created_at)
     SELECT name, lower(hex(nonce)), lower(hex(ciphertext)), created_at FROM secrets",
    "DROP TABLE secrets",
    "ALTER TABLE secrets_hex RENAME TO secrets",
];

pub(super) async fn upgrade(pool: &AnyPool, migrator: &Migrator) -> Result<(), StoreError> {
    let recorded: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_one(pool)
    .await?;
    if recorded == 0 {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    for (version, text) in LEGACY {
        let Some(current) = migrator.iter().find(|m| m.version == version) else {
            continue;
        };
        let upgraded = sqlx::query(
            "UPDATE _sqlx_migrations SET checksum = $1 WHERE version = $2 AND checksum = $3",
        )
        .bind(current.checksum.to_vec())
        .bind(version)
        .bind(Sha384::digest(text.as_bytes()).to_vec())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if upgraded && version == 2 {
            for statement in SECRETS_TO_HEX {
                sqlx::query(statement).execute(&mut *tx).await?;
            }
        }
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

    use super::*;
    use crate::store::Store;

    /// A database as berth wrote it before the portable schema opens with everything in it.
    #[tokio::test]
    async fn a_database_from_before_upgrades_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let then = dir.path().join("then");
        std::fs::create_dir(&then).expect("dir");
        for (version, text) in LEGACY {
            std::fs::write(then.join(format!("{version:04}_legacy.sql")), text).expect("write");
        }
        for m in sqlx::migrate!("./migrations")
            .iter()
            .filter(|m| m.version > 3)
        {
            std::fs::write(then.join(format!("{:04}_later.sql", m.version)), &*m.sql)
                .expect("write");
        }
        let db = dir.path().join("state.db");
        let old = SqlitePool::connect_with(
            SqliteConnectOptions::new()
                .filename(&db)
                .create_if_missing(true),
        )
        .await
        .expect("open");
        Migrator::new(then.as_path())
            .await
            .expect("legacy migrations")
            .run(&old)
            .await
            .expect("legacy schema");
        let nonce: Vec<u8> = (0..24).collect();
        let ciphertext: Vec<u8> = vec![0, 255, 7, 128];
        sqlx::query("INSERT INTO secrets VALUES ('k', ?, ?, 5)")
            .bind(&nonce)
            .bind(&ciphertext)
            .execute(&old)
            .await
            .expect("secret");
        sqlx::query("INSERT INTO tokens (name, token_sha256, created_at) VALUES ('a', 'h', 1)")
            .execute(&old)
            .await
            .expect("token");
        old.close().await;

        let store = Store::open(&db).await.expect("the new berth opens it");
        assert_eq!(
            store.secret("k").await.expect("secret"),
            Some((nonce, ciphertext))
        );
        assert!(store.token_exists("h").await.expect("token"));
        store.insert_token("b", "h2", 2).await.expect("a new token");
        store.close().await;
        // And again: the upgrade happened once.
        let store = Store::open(&db).await.expect("reopens");
        assert_eq!(store.api_token_hashes().await.expect("hashes").len(), 2);
        assert_eq!(store.secret_names().await.expect("names").len(), 1);
    }
}
