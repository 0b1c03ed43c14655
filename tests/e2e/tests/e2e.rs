//! berth end-to-end suite: the real `berth server` with real containers (runc), a real
//! registry and real images, driven through the HTTP API, the CLI and the ingress.
//!
//! Needs root. Setup runs once (registry, images, server), then every test runs (in parallel,
//! `--test-threads` to change; the soak and load tests alone, after the others, since they
//! measure the host), then the `teardown_and_leak_check` trial stops everything and compares
//! host state (namespaces, mounts, veths, iptables, shims, cgroups) with a snapshot taken
//! before setup.
//!
//! Environment: `BERTH_BIN` (default `target/debug/berth`), `BERTH_E2E_KEEP=1` keeps the
//! whole temporary directory (server log, state, image stores) even when everything passes.
//! Without it a failed run keeps the directory without its image stores and registry data.

mod cases;
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use libtest_mimic::{Arguments, Failed, Trial};

use common::harness::{self, Env, Suite};

const TEARDOWN: &str = "teardown_and_leak_check";
/// Most of a test's time is spent waiting on containers, so run more tests than cores.
const DEFAULT_THREADS: usize = 4;

/// Counts finished tests so the teardown trial can wait for all of them.
#[derive(Default)]
struct Progress {
    finished: Mutex<usize>,
    changed: Condvar,
    any_failed: AtomicBool,
}

impl Progress {
    fn wait_for(&self, count: usize) {
        let mut finished = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        while *finished < count {
            finished = self
                .changed
                .wait(finished)
                .unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Marks a test finished when dropped, also when the test panics.
struct Finished(Arc<Progress>);

impl Drop for Finished {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.any_failed.store(true, Ordering::SeqCst);
        }
        let mut finished = self.0.finished.lock().unwrap_or_else(|p| p.into_inner());
        *finished += 1;
        self.0.changed.notify_all();
    }
}

type Shared = Arc<Result<Env, String>>;

fn main() {
    let mut args = Arguments::from_args();
    if args.test_threads.is_none() {
        let from_env = std::env::var("RUST_TEST_THREADS")
            .ok()
            .and_then(|v| v.parse().ok());
        args.test_threads = Some(from_env.unwrap_or(DEFAULT_THREADS));
    }
    let shared_cases = cases::all();
    let exclusive_cases = cases::exclusive();
    let exclusive_from = shared_cases.len();
    let cases: Vec<cases::Case> = shared_cases.into_iter().chain(exclusive_cases).collect();

    // Which trials will run decides whether setup is needed at all.
    let selected = cases
        .iter()
        .filter(|c| !args.is_filtered_out(&Trial::test(c.name, || Ok(()))))
        .count();
    let teardown_selected = !args.is_filtered_out(&Trial::test(TEARDOWN, || Ok(())));
    if args.list || (selected == 0 && !teardown_selected) {
        let mut trials: Vec<Trial> = cases
            .iter()
            .map(|c| Trial::test(c.name, || Ok(())))
            .collect();
        trials.push(Trial::test(TEARDOWN, || Ok(())));
        libtest_mimic::run(&args, trials).exit();
    }

    let suite = match Suite::prepare() {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(101);
        }
    };
    let env: Shared = Arc::new(harness::setup(&suite.tmp));
    if let Err(e) = env.as_ref() {
        eprintln!("setup failed: {e}");
    }

    let progress = Arc::new(Progress::default());
    // Tests share the host under a read lock; an exclusive one takes the write lock. Those
    // come last in the list, so when one waits for the lock no other test is still to start.
    let host = Arc::new(RwLock::new(()));
    let mut trials = Vec::new();
    for (index, case) in cases.into_iter().enumerate() {
        let (env, progress, host) = (Arc::clone(&env), Arc::clone(&progress), Arc::clone(&host));
        let exclusive = index >= exclusive_from;
        trials.push(Trial::test(case.name, move || {
            let _finished = Finished(Arc::clone(&progress));
            let (_shared, _alone) = if exclusive {
                (None, Some(host.write().unwrap_or_else(|p| p.into_inner())))
            } else {
                (Some(host.read().unwrap_or_else(|p| p.into_inner())), None)
            };
            let result = match env.as_ref() {
                Ok(env) => (case.run)(env),
                Err(e) => Err(format!(
                    "setup failed (details above the test list): {}",
                    e.lines().next().unwrap_or_default()
                )),
            };
            if result.is_err() {
                progress.any_failed.store(true, Ordering::SeqCst);
            }
            result.map_err(Failed::from)
        }));
    }
    {
        let (env, progress, suite) = (Arc::clone(&env), Arc::clone(&progress), Arc::clone(&suite));
        // Dispatched last: libtest-mimic hands out trials in order, so every other selected
        // trial has started by the time this one runs, and it waits for them to finish.
        trials.push(Trial::test(TEARDOWN, move || {
            progress.wait_for(selected);
            let failed = progress.any_failed.load(Ordering::SeqCst);
            let problems = harness::teardown(&suite, env.as_ref().as_ref().ok(), failed);
            if problems.is_empty() {
                Ok(())
            } else {
                Err(Failed::from(problems.join("\n\n")))
            }
        }));
    }

    let conclusion = libtest_mimic::run(&args, trials);
    if !teardown_selected {
        // Filtered out by the user: tear down anyway, after the summary.
        let failed = conclusion.has_failed();
        let problems = harness::teardown(&suite, env.as_ref().as_ref().ok(), failed);
        if !problems.is_empty() {
            eprintln!("teardown problems:\n{}", problems.join("\n\n"));
            std::process::exit(101);
        }
    }
    conclusion.exit();
}
