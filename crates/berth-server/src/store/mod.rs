//! The state store: SQLite through sqlx, with embedded migrations. Only this module runs SQL.

mod deployments;
mod pod_tokens;
mod secrets;

pub use pod_tokens::PodTokenRow;

pub use deployments::{DeploymentRow, VersionRow};

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::str::FromStr;

use berth_api::ContainerStatus;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};

use crate::spec::PodSpec;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("state store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("state store holds an unreadable {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
}

/// One container as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRow {
    pub id: String,
    pub stub_id: String,
    pub deployment_id: Option<String>,
    pub status: ContainerStatus,
    pub image: String,
    pub ports: Vec<u16>,
    pub cpu_millis: u64,
    pub memory_mib: u64,
    pub keep_warm_seconds: i64,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub scheduled_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Its URLs need a token.
    pub authorized: bool,
    /// `runc` or `gvisor`.
    pub runtime: String,
    pub block_network: bool,
    /// CIDRs, in canonical form.
    pub allow_list: Vec<String>,
    pub read_only_rootfs: bool,
    pub disk_mib: Option<u64>,
    pub privileged_user: bool,
    /// An init runs as PID 1: asked for until the start, then what the node ran.
    pub init: bool,
    /// The signal a stop sends first: the pod's, or the image's once started.
    pub stop_signal: Option<String>,
    /// `None` for the server's default.
    pub stop_grace_seconds: Option<u64>,
}

#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // In WAL mode NORMAL syncs at checkpoints, not at every commit: a killed server
            // loses nothing, a power cut may lose the last transitions, which the recovery
            // at start reconciles against the node anyway. A create writes five rows.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        Ok(Store { pool })
    }

    #[cfg(test)]
    pub async fn token_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM tokens")
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn insert_token(&self, name: &str, sha256: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO tokens (name, token_sha256, created_at) VALUES (?, ?, ?)")
            .bind(name)
            .bind(sha256)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn token_exists(&self, sha256: &str) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tokens WHERE token_sha256 = ?")
            .bind(sha256)
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    pub async fn upsert_stub(&self, id: &str, spec: &PodSpec, now: i64) -> Result<(), StoreError> {
        let text = serde_json::to_string(spec).map_err(|e| StoreError::Corrupt {
            what: "stub",
            detail: e.to_string(),
        })?;
        sqlx::query("INSERT OR IGNORE INTO stubs (id, spec, created_at) VALUES (?, ?, ?)")
            .bind(id)
            .bind(text)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn stub_spec(&self, id: &str) -> Result<Option<PodSpec>, StoreError> {
        let text: Option<String> = sqlx::query_scalar("SELECT spec FROM stubs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| StoreError::Corrupt {
                what: "stub",
                detail: e.to_string(),
            })
        })
        .transpose()
    }

    /// Every stub's spec.
    pub async fn stub_specs(&self) -> Result<Vec<PodSpec>, StoreError> {
        let texts: Vec<String> = sqlx::query_scalar("SELECT spec FROM stubs")
            .fetch_all(&self.pool)
            .await?;
        texts
            .iter()
            .map(|t| {
                serde_json::from_str(t).map_err(|e| StoreError::Corrupt {
                    what: "stub",
                    detail: e.to_string(),
                })
            })
            .collect()
    }

    pub async fn insert_container(&self, c: &ContainerRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO containers (id, stub_id, deployment_id, status, image, ports, cpu_millis,
             memory_mib, keep_warm_seconds, exit_code, reason, ipv4, ipv6, scheduled_at, started_at,
             finished_at, authorized, runtime, block_network, allow_list, read_only_rootfs,
             disk_mib, privileged_user, init, stop_signal, stop_grace_seconds)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&c.id)
        .bind(&c.stub_id)
        .bind(&c.deployment_id)
        .bind(c.status.as_str())
        .bind(&c.image)
        .bind(ports_text(&c.ports))
        .bind(c.cpu_millis as i64)
        .bind(c.memory_mib as i64)
        .bind(c.keep_warm_seconds)
        .bind(c.exit_code)
        .bind(&c.reason)
        .bind(c.ipv4.map(|a| a.to_string()))
        .bind(c.ipv6.map(|a| a.to_string()))
        .bind(c.scheduled_at)
        .bind(c.started_at)
        .bind(c.finished_at)
        .bind(c.authorized)
        .bind(&c.runtime)
        .bind(c.block_network)
        .bind(c.allow_list.join(","))
        .bind(c.read_only_rootfs)
        .bind(c.disk_mib.map(|m| m as i64))
        .bind(c.privileged_user)
        .bind(c.init)
        .bind(&c.stop_signal)
        .bind(c.stop_grace_seconds.map(|g| g as i64))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Writes every mutable field of the row.
    pub async fn update_container(&self, c: &ContainerRow) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE containers SET status = ?, image = ?, ports = ?, exit_code = ?, reason = ?,
             ipv4 = ?, ipv6 = ?, started_at = ?, finished_at = ?, init = ?, stop_signal = ?
             WHERE id = ?",
        )
        .bind(c.status.as_str())
        .bind(&c.image)
        .bind(ports_text(&c.ports))
        .bind(c.exit_code)
        .bind(&c.reason)
        .bind(c.ipv4.map(|a| a.to_string()))
        .bind(c.ipv6.map(|a| a.to_string()))
        .bind(c.started_at)
        .bind(c.finished_at)
        .bind(c.init)
        .bind(&c.stop_signal)
        .bind(&c.id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn container(&self, id: &str) -> Result<Option<ContainerRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM containers WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| from_row(&r)).transpose()
    }

    /// Containers, newest first; with `active_only`, those not in a terminal state.
    pub async fn containers(&self, active_only: bool) -> Result<Vec<ContainerRow>, StoreError> {
        let sql = if active_only {
            format!(
                "SELECT * FROM containers WHERE status NOT IN ({}) ORDER BY scheduled_at DESC, id",
                terminal_statuses_sql()
            )
        } else {
            "SELECT * FROM containers ORDER BY scheduled_at DESC, id".to_string()
        };
        let rows = sqlx::query(&sql).fetch_all(&self.pool).await?;
        rows.iter().map(from_row).collect()
    }

    pub async fn count_by_status(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM containers GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<String, _>("status"), r.get::<i64, _>("n")))
            .collect())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The terminal states as an SQL list, from the one place that defines them.
fn terminal_statuses_sql() -> String {
    ContainerStatus::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An address column: empty, or an address berth wrote.
fn address<T: FromStr>(r: &sqlx::sqlite::SqliteRow, column: &str) -> Result<Option<T>, StoreError>
where
    T::Err: std::fmt::Display,
{
    let text: Option<String> = r.try_get(column)?;
    text.map(|t| {
        t.parse().map_err(|e: T::Err| StoreError::Corrupt {
            what: "address",
            detail: format!("{t:?}: {e}"),
        })
    })
    .transpose()
}

fn ports_text(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn corrupt(what: &'static str) -> impl FnOnce(String) -> StoreError {
    move |detail| StoreError::Corrupt { what, detail }
}

fn from_row(r: &sqlx::sqlite::SqliteRow) -> Result<ContainerRow, StoreError> {
    let status: String = r.try_get("status")?;
    let ports: String = r.try_get("ports")?;
    Ok(ContainerRow {
        id: r.try_get("id")?,
        stub_id: r.try_get("stub_id")?,
        deployment_id: r.try_get("deployment_id")?,
        status: ContainerStatus::parse(&status).ok_or(StoreError::Corrupt {
            what: "status",
            detail: status.clone(),
        })?,
        image: r.try_get("image")?,
        ports: ports
            .split(',')
            .filter(|p| !p.is_empty())
            .map(u16::from_str)
            .collect::<Result<_, _>>()
            .map_err(|e| StoreError::Corrupt {
                what: "port list",
                detail: e.to_string(),
            })?,
        cpu_millis: r.try_get::<i64, _>("cpu_millis")? as u64,
        memory_mib: r.try_get::<i64, _>("memory_mib")? as u64,
        keep_warm_seconds: r.try_get("keep_warm_seconds")?,
        exit_code: r.try_get("exit_code")?,
        reason: r.try_get("reason")?,
        ipv4: address(r, "ipv4")?,
        ipv6: address(r, "ipv6")?,
        scheduled_at: r.try_get("scheduled_at")?,
        started_at: r.try_get("started_at")?,
        finished_at: r.try_get("finished_at")?,
        authorized: r.try_get("authorized")?,
        runtime: r.try_get("runtime")?,
        block_network: r.try_get("block_network")?,
        allow_list: r
            .try_get::<String, _>("allow_list")?
            .split(',')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect(),
        read_only_rootfs: r.try_get("read_only_rootfs")?,
        disk_mib: r.try_get::<Option<i64>, _>("disk_mib")?.map(|m| m as u64),
        privileged_user: r.try_get("privileged_user")?,
        init: r.try_get("init")?,
        stop_signal: r.try_get("stop_signal")?,
        stop_grace_seconds: r
            .try_get::<Option<i64>, _>("stop_grace_seconds")?
            .map(|g| g as u64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn containers_round_trip_and_filter() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("state.db"))
            .await
            .expect("opens");
        let spec = PodSpec {
            image: "busybox".into(),
            ports: vec![80],
            cpu_millis: 1000,
            memory_mib: 128,
            env: Default::default(),
            entrypoint: None,
            keep_warm_seconds: 600,
            volumes: vec![],
            secrets: vec![],
            code: None,
            workdir: None,
            authorized: false,
            runtime: None,
            block_network: false,
            allow_list: vec![],
            read_only_rootfs: false,
            disk_mib: None,
            privileged_user: false,
            init: true,
            stop_signal: None,
            stop_grace_seconds: None,
        };
        store.upsert_stub("s1", &spec, 1).await.expect("stub");
        store
            .upsert_stub("s1", &spec, 2)
            .await
            .expect("stub again is fine");
        assert_eq!(store.stub_spec("s1").await.expect("read"), Some(spec));
        let mut row = ContainerRow {
            id: "pod-s1-00000001".into(),
            stub_id: "s1".into(),
            deployment_id: None,
            status: ContainerStatus::Pending,
            image: "busybox".into(),
            ports: vec![80, 81],
            cpu_millis: 1000,
            memory_mib: 128,
            keep_warm_seconds: 600,
            exit_code: None,
            reason: None,
            ipv4: None,
            ipv6: None,
            scheduled_at: 10,
            started_at: None,
            finished_at: None,
            authorized: false,
            runtime: "gvisor".into(),
            block_network: false,
            allow_list: vec!["10.0.0.0/8".into(), "2001:db8::/32".into()],
            read_only_rootfs: true,
            disk_mib: Some(512),
            privileged_user: true,
            init: true,
            stop_signal: Some("SIGINT".into()),
            stop_grace_seconds: Some(30),
        };
        store.insert_container(&row).await.expect("insert");
        assert_eq!(
            store.container(&row.id).await.expect("get"),
            Some(row.clone())
        );
        row.status = ContainerStatus::Running;
        row.ipv4 = Some("10.213.0.5".parse().expect("ip"));
        row.ipv6 = Some("fd62:6572:7468::5".parse().expect("ip"));
        // What the node ran: the image brought its own init and stop signal.
        row.init = false;
        row.stop_signal = Some("SIGQUIT".into());
        store.update_container(&row).await.expect("update");
        assert_eq!(
            store.containers(true).await.expect("list"),
            vec![row.clone()]
        );
        row.status = ContainerStatus::Exited;
        row.exit_code = Some(3);
        store.update_container(&row).await.expect("update");
        assert_eq!(store.containers(true).await.expect("list").len(), 0);
        assert_eq!(store.containers(false).await.expect("list"), vec![row]);
    }
}
