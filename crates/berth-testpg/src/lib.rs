//! A throwaway PostgreSQL server for tests: Debian's own binaries, a data directory in a
//! temporary directory, a Unix socket and no TCP port. Dropping it stops the server and
//! removes everything; if the test process dies first, the kernel stops the server for it.

use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{Pid, User};

#[derive(Debug, thiserror::Error)]
pub enum TestPgError {
    #[error("no PostgreSQL server binaries under /usr/lib/postgresql (apt install postgresql)")]
    NotInstalled,
    #[error("no `postgres` user to run PostgreSQL as (apt install postgresql)")]
    NoUser,
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} failed: {output}")]
    Failed { what: String, output: String },
    #[error("PostgreSQL did not accept connections within {0:?}; its log:\n{1}")]
    NotReady(Duration, String),
}

/// A running PostgreSQL cluster; `url(db)` names a database in it.
pub struct TestPostgres {
    child: Child,
    socket_dir: PathBuf,
    bin_dir: PathBuf,
    log: PathBuf,
    // Last: removed after the server stopped.
    _dir: tempfile::TempDir,
}

const START_LIMIT: Duration = Duration::from_secs(60);

impl TestPostgres {
    /// Makes a cluster and starts its server. The server dies with the calling thread
    /// (`PR_SET_PDEATHSIG`), so start it on a thread that outlives its users.
    pub fn start() -> Result<TestPostgres, TestPgError> {
        let bin_dir = bin_dir()?;
        let user = User::from_name("postgres")
            .ok()
            .flatten()
            .ok_or(TestPgError::NoUser)?;
        let dir = tempfile::Builder::new()
            .prefix("berth-testpg-")
            .tempdir()
            .map_err(io("make the cluster's directory"))?;
        let data = dir.path().join("data");
        let socket_dir = dir.path().join("socket");
        for path in [dir.path(), &data, &socket_dir] {
            if path != dir.path() {
                std::fs::create_dir(path).map_err(io(format!("create {}", path.display())))?;
            }
            chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                .map_err(io(format!("chown {}", path.display())))?;
        }
        let initdb = Command::new(bin_dir.join("initdb"))
            .args(["--auth=trust", "--username=postgres", "--encoding=UTF8"])
            .args(["--no-sync", "--no-instructions", "-D"])
            .arg(&data)
            .uid(user.uid.as_raw())
            .gid(user.gid.as_raw())
            .current_dir(dir.path())
            .output()
            .map_err(io("run initdb"))?;
        if !initdb.status.success() {
            return Err(TestPgError::Failed {
                what: "initdb".into(),
                output: String::from_utf8_lossy(&initdb.stderr).into_owned(),
            });
        }
        let log = dir.path().join("postgres.log");
        let out = std::fs::File::create(&log).map_err(io("create the server log"))?;
        chown(&log, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
            .map_err(io("chown the server log"))?;
        let err = out.try_clone().map_err(io("clone the log handle"))?;
        let mut cmd = Command::new(bin_dir.join("postgres"));
        cmd.arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(&socket_dir)
            // Loopback-free and disposable: no TCP, no durability.
            .args(["-c", "listen_addresses=", "-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .args(["-c", "max_connections=300"])
            .uid(user.uid.as_raw())
            .gid(user.gid.as_raw())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // SAFETY: prctl is async-signal-safe; this runs after the uid change, which would
        // clear the setting, and before exec, which keeps it.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(io("start postgres"))?;
        let server = TestPostgres {
            child,
            socket_dir,
            bin_dir,
            log,
            _dir: dir,
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&self) -> Result<(), TestPgError> {
        let started = Instant::now();
        loop {
            let ready = Command::new(self.bin_dir.join("pg_isready"))
                .arg("-h")
                .arg(&self.socket_dir)
                .args(["-U", "postgres", "-q"])
                .status()
                .map_err(io("run pg_isready"))?;
            if ready.success() {
                return Ok(());
            }
            if started.elapsed() > START_LIMIT {
                return Err(TestPgError::NotReady(START_LIMIT, self.log_text()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The directory of the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// A `postgres://` URL for database `name` over the socket.
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://postgres@localhost/{name}?host={}",
            self.socket_dir.display()
        )
    }

    /// Creates database `name` (letters, digits, `_`) and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String, TestPgError> {
        assert!(
            name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "database name {name:?}"
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(self.url(name))
    }

    /// Runs one SQL command in database `db` and returns what psql printed (unaligned,
    /// tuples only).
    pub fn psql(&self, db: &str, sql: &str) -> Result<String, TestPgError> {
        let out = Command::new(self.bin_dir.join("psql"))
            .arg("-h")
            .arg(&self.socket_dir)
            .args([
                "-U",
                "postgres",
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-Atc",
                sql,
            ])
            .output()
            .map_err(io("run psql"))?;
        if !out.status.success() {
            return Err(TestPgError::Failed {
                what: format!("psql {sql:?}"),
                output: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        // SIGINT is PostgreSQL's fast shutdown: it ends the sessions and stops its children.
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The newest installed major version's binaries.
fn bin_dir() -> Result<PathBuf, TestPgError> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| TestPgError::NotInstalled)?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((major, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or(TestPgError::NotInstalled)
}

fn io<W: Into<String>>(what: W) -> impl FnOnce(std::io::Error) -> TestPgError {
    let what = what.into();
    move |source| TestPgError::Io { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_and_leaves_nothing() {
        let pg = TestPostgres::start().expect("starts");
        let url = pg.create_database("berth_probe").expect("creates");
        assert!(url.contains("/berth_probe?host=/"), "{url}");
        let answer = pg.psql("berth_probe", "SELECT 40 + 2").expect("query");
        assert_eq!(answer.trim(), "42");
        let dir = pg.socket_dir().parent().expect("parent").to_path_buf();
        let pid = pg.child.id();
        drop(pg);
        assert!(!dir.exists(), "{} is left", dir.display());
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "postgres {pid} still runs"
        );
    }
}
