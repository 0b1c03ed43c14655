//! The state store: SQLite through sqlx, with embedded migrations. Only this module runs SQL.

mod cluster;
mod deployments;
mod legacy;
mod nodes;
mod pod_tokens;
mod secrets;

pub use nodes::{NodeRow, NodeUsage};
pub use pod_tokens::PodTokenRow;

pub use deployments::{DeploymentRow, VersionRow};

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::str::FromStr;

use berth_api::ContainerStatus;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, ConnectOptions, Executor, Row};

use crate::spec::PodSpec;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("state store {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("state store URL {0}")]
    Url(String),
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
    /// The node it is placed on; `None` only in a database from before nodes.
    pub node_id: Option<String>,
}

/// The control plane's state: SQLite in the state directory on one machine, PostgreSQL when
/// several machines share it. Both run the same migrations and the same SQL (`$N`
/// placeholders, flags as 0/1 integers) through sqlx's `Any` driver.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> Result<Backend, StoreError> {
        match url.split_once(':').map(|(scheme, _)| scheme) {
            Some("sqlite") => Ok(Backend::Sqlite),
            Some("postgres" | "postgresql") => Ok(Backend::Postgres),
            _ => Err(StoreError::Url(format!(
                "{:?} is neither postgres://... nor sqlite://...",
                redact(url)
            ))),
        }
    }
}

/// The URL without its password, for messages and logs.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((user, host)) if user.contains(':') => {
                let name = user.split(':').next().unwrap_or_default();
                format!("{scheme}://{name}:***@{host}")
            }
            _ => url.to_string(),
        },
        None => url.to_string(),
    }
}

impl Store {
    /// The one-machine store: SQLite at `path`, created if missing.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let url = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .to_url_lossy();
        Store::connect(url.as_str()).await
    }

    /// Connects to the database `url` names (`sqlite://PATH?mode=rwc` or `postgres://...`)
    /// and brings its schema up to date. Replicas sharing one PostgreSQL may call this at
    /// once: sqlx serializes the migrations with an advisory lock.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(url)?;
        let options = AnyPoolOptions::new().after_connect(move |conn, _| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // In WAL mode NORMAL syncs at checkpoints, not at every commit: a killed
                    // server loses nothing, a power cut may lose the last transitions, which
                    // the recovery at start reconciles against the node anyway.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                }
                Ok(())
            })
        });
        let pool = match backend {
            // One writer at a time in SQLite; a few readers beside it.
            Backend::Sqlite => options.max_connections(4),
            // A shared database has a connection limit for every replica together: give
            // idle connections back soon after a burst.
            Backend::Postgres => options
                .max_connections(16)
                .idle_timeout(std::time::Duration::from_secs(15)),
        }
        .connect(url)
        .await
        .map_err(|e| StoreError::Connect {
            url: redact(url),
            source: e,
        })?;
        let migrator = sqlx::migrate!("./migrations");
        if backend == Backend::Sqlite {
            legacy::upgrade(&pool, &migrator).await?;
        }
        migrator.run(&pool).await?;
        Ok(Store { pool })
    }

    #[cfg(test)]
    pub async fn token_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM tokens")
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn insert_token(&self, name: &str, sha256: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO tokens (name, token_sha256, created_at) VALUES ($1, $2, $3)")
            .bind(name)
            .bind(sha256)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn token_exists(&self, sha256: &str) -> Result<bool, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tokens WHERE token_sha256 = $1")
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
        sqlx::query(
            "INSERT INTO stubs (id, spec, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(text)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn stub_spec(&self, id: &str) -> Result<Option<PodSpec>, StoreError> {
        let text: Option<String> = sqlx::query_scalar("SELECT spec FROM stubs WHERE id = $1")
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
             disk_mib, privileged_user, init, stop_signal, stop_grace_seconds, node_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27)",
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
        .bind(flag(c.authorized))
        .bind(&c.runtime)
        .bind(flag(c.block_network))
        .bind(c.allow_list.join(","))
        .bind(flag(c.read_only_rootfs))
        .bind(c.disk_mib.map(|m| m as i64))
        .bind(flag(c.privileged_user))
        .bind(flag(c.init))
        .bind(&c.stop_signal)
        .bind(c.stop_grace_seconds.map(|g| g as i64))
        .bind(&c.node_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Writes every mutable field of the row.
    pub async fn update_container(&self, c: &ContainerRow) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE containers SET status = $1, image = $2, ports = $3, exit_code = $4, reason = $5,
             ipv4 = $6, ipv6 = $7, started_at = $8, finished_at = $9, init = $10, stop_signal = $11
             WHERE id = $12",
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
        .bind(flag(c.init))
        .bind(&c.stop_signal)
        .bind(&c.id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn container(&self, id: &str) -> Result<Option<ContainerRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM containers WHERE id = $1")
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

    /// The containers on `node_id` that have not ended.
    pub async fn active_containers_on(
        &self,
        node_id: &str,
    ) -> Result<Vec<ContainerRow>, StoreError> {
        let sql = format!(
            "SELECT * FROM containers WHERE node_id = $1 AND status NOT IN ({})
             ORDER BY scheduled_at DESC, id",
            terminal_statuses_sql()
        );
        let rows = sqlx::query(&sql)
            .bind(node_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(from_row).collect()
    }

    /// The containers on `node_id` in `status`.
    pub async fn containers_on_in(
        &self,
        node_id: &str,
        status: ContainerStatus,
    ) -> Result<Vec<ContainerRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM containers WHERE node_id = $1 AND status = $2
             ORDER BY scheduled_at DESC, id",
        )
        .bind(node_id)
        .bind(status.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// The containers that have not ended on `node_id` and on every worker (a node with an
    /// agent address): the ones a control plane on `node_id` looks after.
    pub async fn active_containers_managed_by(
        &self,
        node_id: &str,
    ) -> Result<Vec<ContainerRow>, StoreError> {
        let sql = format!(
            "SELECT * FROM containers WHERE (node_id = $1 OR node_id IN
             (SELECT id FROM nodes WHERE agent_address IS NOT NULL))
             AND status NOT IN ({}) ORDER BY scheduled_at DESC, id",
            terminal_statuses_sql()
        );
        let rows = sqlx::query(&sql)
            .bind(node_id)
            .fetch_all(&self.pool)
            .await?;
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
fn address<T: FromStr>(r: &AnyRow, column: &str) -> Result<Option<T>, StoreError>
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

/// A flag as stored: both databases read 0/1 integers alike, booleans not.
fn flag(on: bool) -> i64 {
    i64::from(on)
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

fn from_row(r: &AnyRow) -> Result<ContainerRow, StoreError> {
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
        authorized: r.try_get::<i64, _>("authorized")? != 0,
        runtime: r.try_get("runtime")?,
        block_network: r.try_get::<i64, _>("block_network")? != 0,
        allow_list: r
            .try_get::<String, _>("allow_list")?
            .split(',')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect(),
        read_only_rootfs: r.try_get::<i64, _>("read_only_rootfs")? != 0,
        disk_mib: r.try_get::<Option<i64>, _>("disk_mib")?.map(|m| m as u64),
        privileged_user: r.try_get::<i64, _>("privileged_user")? != 0,
        init: r.try_get::<i64, _>("init")? != 0,
        stop_signal: r.try_get("stop_signal")?,
        stop_grace_seconds: r
            .try_get::<Option<i64>, _>("stop_grace_seconds")?
            .map(|g| g as u64),
        node_id: r.try_get("node_id")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn containers_round_trip_and_filter() {
        testing::on_both(containers_round_trip).await;
    }

    async fn containers_round_trip(store: Store) {
        let spec = testing::spec();
        store.upsert_stub("s1", &spec, 1).await.expect("stub");
        store
            .upsert_stub("s1", &spec, 2)
            .await
            .expect("stub again is fine");
        assert_eq!(store.stub_spec("s1").await.expect("read"), Some(spec));
        let mut row = ContainerRow {
            runtime: "gvisor".into(),
            allow_list: vec!["10.0.0.0/8".into(), "2001:db8::/32".into()],
            read_only_rootfs: true,
            disk_mib: Some(512),
            privileged_user: true,
            stop_signal: Some("SIGINT".into()),
            stop_grace_seconds: Some(30),
            ..testing::row("pod-s1-00000001", "s1")
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
        let counts = store.count_by_status().await.expect("counts");
        assert_eq!(counts, vec![("EXITED".to_string(), 1)]);
    }

    #[tokio::test]
    async fn tokens_and_secrets_round_trip() {
        testing::on_both(|store| async move {
            store.insert_token("admin", "ab12", 1).await.expect("token");
            assert!(store.token_exists("ab12").await.expect("lookup"));
            assert!(!store.token_exists("ab13").await.expect("lookup"));
            assert_eq!(store.api_token_hashes().await.expect("hashes"), ["ab12"]);
            // Every byte value survives, and a second put replaces the first.
            let all: Vec<u8> = (0..=255).collect();
            store.put_secret("k", b"n1", b"c1", 1).await.expect("put");
            store.put_secret("k", &all, &all, 2).await.expect("put");
            assert_eq!(
                store.secret("k").await.expect("get"),
                Some((all.clone(), all))
            );
            assert_eq!(
                store.secret_names().await.expect("names"),
                [("k".to_string(), 2)]
            );
            assert!(store.delete_secret("k").await.expect("delete"));
            assert_eq!(store.secret("k").await.expect("get"), None);
            // Expiry in unix milliseconds, past what 32 bits hold.
            let token = PodTokenRow {
                id: "t1".into(),
                token_hash: "h1".into(),
                container_id: "pod-1".into(),
                port: 8888,
                expires_at: 4_000_000_000_000,
                created_at: 3_000_000_000_000,
            };
            store.insert_pod_token(&token).await.expect("insert");
            let live = store
                .live_pod_tokens(3_500_000_000_000)
                .await
                .expect("live");
            assert_eq!(live, [token]);
            assert!(store
                .live_pod_tokens(4_000_000_000_001)
                .await
                .expect("live")
                .is_empty());
            assert!(!store.delete_pod_token("pod-1", "t1").await.expect("gone"));
        })
        .await;
    }
}

/// Store tests run on both backends.
#[cfg(test)]
pub(crate) mod testing {
    use std::future::Future;

    use berth_api::ContainerStatus;

    use super::{ContainerRow, Store};
    use crate::spec::PodSpec;

    pub fn spec() -> PodSpec {
        PodSpec {
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
        }
    }

    /// A PENDING container of `stub_id` on node `node-1`.
    pub fn row(id: &str, stub_id: &str) -> ContainerRow {
        ContainerRow {
            id: id.into(),
            stub_id: stub_id.into(),
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
            runtime: "runc".into(),
            block_network: false,
            allow_list: vec![],
            read_only_rootfs: false,
            disk_mib: None,
            privileged_user: false,
            init: true,
            stop_signal: None,
            stop_grace_seconds: None,
            node_id: Some("node-1".into()),
        }
    }

    /// Runs `check` on a fresh SQLite store, then on a fresh database in a PostgreSQL server
    /// of its own.
    pub async fn on_both<F, Fut>(check: F)
    where
        F: Fn(Store) -> Fut,
        Fut: Future<Output = ()>,
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let sqlite = Store::open(&dir.path().join("state.db"))
            .await
            .expect("SQLite store opens");
        check(sqlite.clone()).await;
        sqlite.close().await;
        let server = berth_testpg::TestPostgres::start().expect("PostgreSQL starts");
        let url = server.create_database("berth").expect("database");
        let postgres = Store::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", server.log_text()));
        check(postgres.clone()).await;
        postgres.close().await;
    }
}
