//! `BERTH_E2E_DATABASE=postgres` runs the suite with every server's state in PostgreSQL:
//! one server (Debian's binaries, a Unix socket) for the whole run, a database per
//! `berth server` the tests start.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use berth_testpg::TestPostgres;

use super::Res;

static POSTGRES: Mutex<Option<TestPostgres>> = Mutex::new(None);
static DATABASES: AtomicUsize = AtomicUsize::new(0);

/// Whether this run keeps server state in PostgreSQL.
pub fn postgres_asked() -> Res<bool> {
    match std::env::var("BERTH_E2E_DATABASE").as_deref() {
        Err(_) | Ok("" | "sqlite") => Ok(false),
        Ok("postgres") => Ok(true),
        Ok(other) => Err(format!(
            "BERTH_E2E_DATABASE={other:?}: expected postgres or sqlite"
        )),
    }
}

/// Starts the suite's PostgreSQL when asked. Call it on the main thread: the server stops
/// when the thread that started it ends.
pub fn start() -> Res<()> {
    if postgres_asked()? {
        let server = TestPostgres::start().map_err(|e| e.to_string())?;
        eprintln!(
            "suite: server state in PostgreSQL ({})",
            server.socket_dir().display()
        );
        *POSTGRES.lock().unwrap_or_else(|p| p.into_inner()) = Some(server);
    }
    Ok(())
}

/// `--database-url` and a new database for one more server, or nothing under SQLite.
pub fn server_args() -> Res<Vec<String>> {
    let guard = POSTGRES.lock().unwrap_or_else(|p| p.into_inner());
    let Some(server) = guard.as_ref() else {
        return Ok(Vec::new());
    };
    let name = format!("berth_e2e_{}", DATABASES.fetch_add(1, Ordering::SeqCst));
    let url = server.create_database(&name).map_err(|e| e.to_string())?;
    Ok(vec!["--database-url".to_string(), url])
}

/// Stops PostgreSQL and removes its files; after every server stopped.
pub fn stop() {
    let server = POSTGRES.lock().unwrap_or_else(|p| p.into_inner()).take();
    drop(server);
}

/// How many connections a server started with `server_args` holds to its database now (0
/// under SQLite, whose files count among its descriptors from the start). A bounded pool
/// that grows under load and keeps what periodic work uses is not a leak: descriptor
/// counts leave these out.
pub fn pool_connections(server_args: &[String]) -> Res<usize> {
    let guard = POSTGRES.lock().unwrap_or_else(|p| p.into_inner());
    let Some(server) = guard.as_ref() else {
        return Ok(0);
    };
    let Some(name) = server_args
        .iter()
        .position(|a| a == "--database-url")
        .and_then(|at| server_args.get(at + 1))
        // postgres://USER@HOST/NAME?host=/socket/dir: the name is before the query.
        .and_then(|url| url.split('?').next())
        .and_then(|url| url.rsplit_once('/'))
        .map(|(_, name)| name)
    else {
        return Ok(0);
    };
    let count = server
        .psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}'"),
        )
        .map_err(|e| e.to_string())?;
    count
        .trim()
        .parse()
        .map_err(|e| format!("pg_stat_activity count {count:?}: {e}"))
}
