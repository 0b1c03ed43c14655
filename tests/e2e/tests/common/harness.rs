//! Suite setup and teardown: one registry and one berth server shared by every test.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::client::Api;
use super::images::{self, TestImages};
use super::leaks::{self, Snapshot};
use super::registry::Registry;
use super::server::{self, Server};
use super::{command_output, timeouts, Context, Res};

/// Everything a test needs.
pub struct Env {
    pub registry: Registry,
    pub images: TestImages,
    pub server: Server,
    pub api: Api,
}

/// State owned by `main` across setup, the tests and teardown.
pub struct Suite {
    pub tmp: PathBuf,
    pub before: Snapshot,
}

impl Suite {
    /// Creates the suite's temporary directory and snapshots host state before anything starts.
    pub fn prepare() -> Res<Suite> {
        let tmp = tempfile::Builder::new()
            .prefix("berth-e2e-")
            .tempdir()
            .ctx("create the suite's temporary directory")?
            .keep();
        let before = Snapshot::take(&tmp);
        super::database::start()?;
        Ok(Suite { tmp, before })
    }
}

/// The testapp binary cargo built for this suite.
pub fn testapp_binary() -> Res<PathBuf> {
    let path = option_env!("CARGO_BIN_EXE_berth-testapp")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CARGO_BIN_EXE_berth-testapp").map(PathBuf::from))
        .ok_or("CARGO_BIN_EXE_berth-testapp is not set: run the suite through cargo")?;
    if !path.is_file() {
        return Err(format!(
            "the test app {} is missing: cargo build -p berth-e2e --bins",
            path.display()
        ));
    }
    Ok(path)
}

/// Starts the registry, pushes the test images and starts the server.
pub fn setup(tmp: &Path) -> Res<Env> {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(format!(
            "the end-to-end suite runs real containers and needs root (euid is {euid}); \
             run it as root, e.g. sudo -E cargo test -p berth-e2e --test e2e"
        ));
    }
    let started = Instant::now();
    let bin = server::berth_bin()?;
    let testapp = testapp_binary()?;

    let registry = Registry::start(&tmp.join("registry"))?;
    eprintln!("setup: registry on {}", registry.addr);
    let images = images::build_and_push(&registry, &testapp)?;
    eprintln!("setup: test images pushed ({:.1?})", started.elapsed());

    let server = Server::start(tmp, &registry.host())?;
    eprintln!(
        "setup: {} server: api {}, ingress {}, state {}, log {} ({:.1?})",
        bin.display(),
        server.api,
        server.ingress,
        server.state_dir.display(),
        server.log.display(),
        started.elapsed()
    );
    let api = Api::new(&server)?;
    Ok(Env {
        registry,
        images,
        server,
        api,
    })
}

/// Stops what the tests left running, the server and the registry, then checks for leaks.
/// Returns the problems found.
pub fn teardown(suite: &Suite, env: Option<&Env>, tests_failed: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let mut fixtures = Vec::new();
    if let Some(env) = env {
        match stop_leftovers(&env.api) {
            Ok(left) if !left.is_empty() => {
                eprintln!(
                    "teardown: stopped containers the tests left running: {}",
                    left.join(", ")
                );
            }
            Ok(_) => {}
            Err(e) => problems.push(format!("stopping leftover containers: {e}")),
        }
        if let Err(e) = env.server.stop() {
            problems.push(e);
        }
        env.registry.stop();
        fixtures = env.images.host_fixtures();
    }
    super::database::stop();

    let report = leaks::check(&suite.before, &suite.tmp, Duration::from_secs(20));
    if !report.probe_errors.is_empty() {
        problems.push(format!(
            "the leak check could not look at everything: these probes failed, so leaks of \
             their kind cannot be ruled out:\n  {}",
            report.probe_errors.join("\n  ")
        ));
    }
    if !report.leaked.is_empty() {
        problems.push(format!(
            "host state leaked by the server (new since before the suite started):\n  {}",
            report.leaked.join("\n  ")
        ));
    }

    if link_exists(server::BRIDGE) {
        if let Err(e) = command_output("ip", &["link", "del", server::BRIDGE]) {
            problems.push(format!("deleting bridge {}: {e}", server::BRIDGE));
        }
    }
    for path in fixtures {
        let _ = if path.is_dir() {
            std::fs::remove_dir(path)
        } else {
            std::fs::remove_file(path)
        };
    }

    let live_mounts =
        Snapshot::mounts_under(&suite.tmp).unwrap_or_else(|e| vec![format!("(unknown: {e})")]);
    let keep_all = std::env::var_os("BERTH_E2E_KEEP").is_some();
    let keep = tests_failed || !problems.is_empty() || keep_all;
    if let Some(env) = env.filter(|_| tests_failed || !problems.is_empty()) {
        eprintln!(
            "teardown: last lines of the server log {}:\n{}",
            env.server.log.display(),
            env.server.log_tail(60)
        );
    }
    if !live_mounts.is_empty() {
        eprintln!(
            "teardown: keeping {} because mounts are still live under it:\n  {}",
            suite.tmp.display(),
            live_mounts.join("\n  ")
        );
    } else if keep {
        if !keep_all {
            drop_image_stores(&suite.tmp);
        }
        eprintln!("teardown: keeping {} for inspection", suite.tmp.display());
    } else if let Err(e) = std::fs::remove_dir_all(&suite.tmp) {
        problems.push(format!("removing {}: {e}", suite.tmp.display()));
    }
    problems
}

/// Removes the registry's data and every server's image store under `tmp`: gigabytes that
/// say nothing about a failure, and that fill the disk of a machine running the suite often.
/// The logs, databases and pod directories stay.
fn drop_image_stores(tmp: &Path) {
    let _ = std::fs::remove_dir_all(tmp.join("registry"));
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for dir in entries.flatten().map(|e| e.path()) {
        for images in [dir.join("images"), dir.join("state").join("images")] {
            if images.is_dir() {
                let _ = std::fs::remove_dir_all(&images);
            }
        }
    }
}

/// Stops every container still listed and waits for each to end; returns their ids.
pub fn stop_leftovers(api: &Api) -> Res<Vec<String>> {
    let running = api.list(false)?;
    let ids: Vec<String> = running.into_iter().map(|c| c.id).collect();
    for id in &ids {
        if let Err(e) = api.stop(id) {
            eprintln!("teardown: stop {id}: {e}");
        }
    }
    let mut stuck = Vec::new();
    for id in &ids {
        if let Err(e) = api.wait_terminal(id, timeouts::STOP) {
            stuck.push(e);
        }
    }
    if !stuck.is_empty() {
        return Err(stuck.join("\n"));
    }
    Ok(ids)
}

/// A fresh directory for a test's own server, under the suite's temporary directory, once
/// `network`'s bridge is known to be free (two servers on one bridge would share pods' wires).
pub fn own_server_dir(env: &Env, network: &server::PodNetwork, purpose: &str) -> Res<PathBuf> {
    crate::ensure!(
        !link_exists(network.bridge),
        "precondition: the bridge {} already exists",
        network.bridge
    );
    let suite_tmp = env
        .server
        .state_dir
        .parent()
        .ok_or("the server's state directory has no parent")?;
    let dir = suite_tmp.join(format!("{purpose}-server-{}", super::random_hex(4)));
    std::fs::create_dir_all(&dir).with_ctx(|| format!("create {}", dir.display()))?;
    Ok(dir)
}

/// After a test on a server of its own: stops its pods and the server, deletes its bridge,
/// and returns the test's outcome, or the cleanup's failure, with the server's log.
pub fn finish_own_server(
    server: &Server,
    api: &Api,
    network: &server::PodNetwork,
    outcome: Res<()>,
) -> Res<()> {
    let stopped = stop_leftovers(api).map(|_| ());
    let exited = server.stop();
    if link_exists(network.bridge) {
        let _ = command_output("ip", &["link", "del", network.bridge]);
    }
    match (outcome, stopped.and(exited)) {
        (Ok(()), Ok(())) => Ok(()),
        (Err(e), _) | (Ok(()), Err(e)) => Err(server.with_log(e)),
    }
}

/// Whether the network interface `name` exists.
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}
