//! Running a build plan: cache lookups, steps in containers, layers into the store.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};

use super::plan::{BuildPlan, Step};
use crate::{ContentStore, ImageConfig, ResolvedImage};

/// The images being built now, by reference (see [`BuildLock`]).
static IN_PROGRESS: std::sync::LazyLock<(
    std::sync::Mutex<std::collections::HashSet<String>>,
    std::sync::Condvar,
)> = std::sync::LazyLock::new(Default::default);

/// Held while an image is built: a concurrent build of the same image waits for it, and
/// then finds it in the store, instead of building it again.
pub struct BuildLock {
    reference: String,
}

impl BuildLock {
    pub fn acquire(reference: &str, log: BuildLog<'_>) -> BuildLock {
        let (building, done) = &*IN_PROGRESS;
        let mut building = building.lock().unwrap_or_else(|p| p.into_inner());
        if building.contains(reference) {
            log("=> Waiting for the same image, already being built".into());
            while building.contains(reference) {
                building = done.wait(building).unwrap_or_else(|p| p.into_inner());
            }
        }
        building.insert(reference.to_string());
        BuildLock {
            reference: reference.to_string(),
        }
    }
}

impl Drop for BuildLock {
    fn drop(&mut self) {
        let (building, done) = &*IN_PROGRESS;
        building
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.reference);
        done.notify_all();
    }
}

/// Where conda packages put their commands.
const CONDA_BIN: &str = "/opt/conda/bin";

/// How many output lines of a failed step the error quotes.
const FAILURE_TAIL_LINES: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("step {index}/{total} ({step}) failed with exit code {code}:\n{tail}")]
    StepFailed {
        index: usize,
        total: usize,
        step: String,
        code: i32,
        tail: String,
    },
    #[error("step {index}/{total} ({step}) could not run: {source}")]
    StepError {
        index: usize,
        total: usize,
        step: String,
        #[source]
        source: StepError,
    },
    #[error("python_version {wanted} is not in the base image {base}; available: {available}")]
    UnknownPython {
        wanted: String,
        base: String,
        available: String,
    },
    #[error("the build was cancelled")]
    Cancelled,
    #[error("{0}")]
    Store(String),
}

/// Why a step could not run at all (as opposed to running and failing): the runner's own
/// error, whatever its type.
pub type StepError = Box<dyn std::error::Error + Send + Sync>;

/// Where build output goes, a line at a time.
pub type BuildLog<'a> = &'a (dyn Fn(String) + Send + Sync);

/// One step to run in a container.
#[derive(Debug, Clone)]
pub struct StepRun {
    /// A unique name for the step's container.
    pub id: String,
    /// The root filesystem below the step, bottom first.
    pub layers: Vec<PathBuf>,
    /// Where the step's changes go (an overlay upper directory, created by the runner).
    pub upper: PathBuf,
    pub command: String,
    pub env: Vec<String>,
    pub workdir: String,
}

/// Runs build steps in containers (the node agent implements it).
pub trait StepRunner: Send + Sync {
    /// Runs the step to completion, sending each output line to `log`, and returns its exit
    /// code. Stops the container early when `cancelled` becomes true.
    fn run_step(
        &self,
        step: &StepRun,
        log: BuildLog<'_>,
        cancelled: &AtomicBool,
    ) -> Result<i32, StepError>;

    /// Installs a solved conda step's packages into `dir`, which becomes the layer's
    /// `/opt/conda`; returns how many packages.
    fn install_conda(
        &self,
        lock: &berth_conda::Lock,
        specs: &[String],
        dir: &std::path::Path,
    ) -> Result<usize, StepError>;
}

/// Builds `plan` on top of `base`. Each step's layer is looked up by its cache key first; a
/// build whose every step is cached runs nothing. Returns the built image and whether it was
/// a full cache hit.
pub fn build(
    plan: &BuildPlan,
    base: &ResolvedImage,
    store: &ContentStore,
    runner: &dyn StepRunner,
    log: BuildLog<'_>,
    cancelled: &AtomicBool,
) -> Result<(ResolvedImage, bool), BuildError> {
    let _writing = store.writing_blocking();
    let keys = step_keys(plan, base);
    let final_key = keys.last().cloned().unwrap_or_else(|| base_key(plan, base));
    let reference = format!("berth-build/{}", &final_key[..32]);
    if let Some(image) = store.lookup(&reference) {
        log("=> Using cached image".into());
        return Ok((image, true));
    }
    let _building = BuildLock::acquire(&reference, log);
    if let Some(image) = store.lookup(&reference) {
        log("=> Using cached image".into());
        return Ok((image, true));
    }
    check_python(plan, base, store)?;
    log("=> Building image".into());

    let mut layers: Vec<PathBuf> = store.layer_dirs(base);
    let mut layer_digests = base.layer_digests.clone();
    let mut env = base_env(&base.config);
    let mut workdir = plan.workdir.clone().or(base.config.working_dir.clone());
    let total = plan.steps.len();
    for (i, (step, key)) in plan.steps.iter().zip(&keys).enumerate() {
        let index = i + 1;
        if let Step::Env { vars } = step {
            for (k, v) in vars {
                set_env(&mut env, k, v);
            }
            log(format!("=> Step {index}/{total}: {}", step.describe()));
            continue;
        }
        let digest = format!("sha256:{key}");
        let dest = store.layer_dir(&digest);
        if dest.is_dir() {
            log(format!(
                "=> Step {index}/{total}: {} (cached)",
                step.describe()
            ));
        } else {
            if cancelled.load(Ordering::SeqCst) {
                return Err(BuildError::Cancelled);
            }
            log(format!("=> Step {index}/{total}: {}", step.describe()));
            run_one(
                plan,
                step,
                index,
                total,
                &layers,
                &env,
                workdir.as_deref(),
                &dest,
                store,
                runner,
                log,
                cancelled,
            )?;
        }
        store.mark_build_layer(&digest);
        layers.push(dest);
        layer_digests.push(digest);
        if let Step::Conda { .. } = step {
            // The packages' commands (and a conda python) come before the image's own.
            let path = env
                .iter()
                .find(|(k, _)| k == "PATH")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            set_env(&mut env, "PATH", &format!("{CONDA_BIN}:{path}"));
            set_env(&mut env, "CONDA_PREFIX", berth_conda::PREFIX);
        }
    }
    if workdir.is_none() {
        workdir = Some("/".into());
    }
    let config = ImageConfig {
        env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        working_dir: workdir,
        ..base.config.clone()
    };
    // Kept as an OCI image too (layer tarballs, config, manifest), so it can be pushed.
    let manifest_digest = store
        .write_oci_image(&config, &layer_digests)
        .map_err(|e| BuildError::Store(e.to_string()))?;
    let image = ResolvedImage {
        reference,
        manifest_digest,
        config,
        layer_digests,
    };
    store
        .record(&image)
        .map_err(|e| BuildError::Store(e.to_string()))?;
    log(format!("=> Image built: {}", image.reference));
    Ok((image, false))
}

#[allow(clippy::too_many_arguments)]
fn run_one(
    plan: &BuildPlan,
    step: &Step,
    index: usize,
    total: usize,
    layers: &[PathBuf],
    env: &[(String, String)],
    workdir: Option<&str>,
    dest: &std::path::Path,
    store: &ContentStore,
    runner: &dyn StepRunner,
    log: BuildLog<'_>,
    cancelled: &AtomicBool,
) -> Result<(), BuildError> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique per run: two builds sharing this step may run it at the same time.
    static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let run_no = RUNS.fetch_add(1, Ordering::SeqCst);
    let upper = store.tmp_path(&format!(
        "build-{}-{}-{run_no}",
        &name[..16.min(name.len())],
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&upper);
    let tail = std::sync::Mutex::new(std::collections::VecDeque::new());
    let step_log = |line: String| {
        if let Ok(mut t) = tail.lock() {
            if t.len() == FAILURE_TAIL_LINES {
                t.pop_front();
            }
            t.push_back(line.clone());
        }
        log(line);
    };
    let result = match (step, plan.command_of(step)) {
        (Step::Conda { packages, lock, .. }, _) => {
            install_conda(runner, lock, packages, &upper, &step_log)
        }
        (_, Some(command)) => {
            let run = StepRun {
                id: format!("build-{}", &name[..12.min(name.len())]),
                layers: layers.to_vec(),
                upper: upper.clone(),
                command,
                env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                workdir: workdir.unwrap_or("/").to_string(),
            };
            runner.run_step(&run, &step_log, cancelled)
        }
        (_, None) => return Ok(()),
    };
    let fail = |e: BuildError| {
        let _ = std::fs::remove_dir_all(&upper);
        Err(e)
    };
    match result {
        _ if cancelled.load(Ordering::SeqCst) => fail(BuildError::Cancelled),
        Ok(0) => match std::fs::rename(&upper, dest) {
            Ok(()) => Ok(()),
            // Another build with the same prefix made this layer meanwhile; keep theirs.
            Err(_) if dest.is_dir() => {
                let _ = std::fs::remove_dir_all(&upper);
                Ok(())
            }
            Err(e) => fail(BuildError::Store(format!(
                "moving the layer of step {index} into {}: {e}",
                dest.display()
            ))),
        },
        Ok(code) => fail(BuildError::StepFailed {
            index,
            total,
            step: step.describe(),
            code,
            tail: tail
                .lock()
                .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
                .unwrap_or_default(),
        }),
        Err(source) => fail(BuildError::StepError {
            index,
            total,
            step: step.describe(),
            source,
        }),
    }
}

/// A conda step: its solved packages installed into `<upper>/opt/conda`. As a step's
/// exit code, so a failure is handled (and nothing kept) like a failed command.
fn install_conda(
    runner: &dyn StepRunner,
    lock: &[String],
    specs: &[String],
    upper: &std::path::Path,
    log: BuildLog<'_>,
) -> Result<i32, StepError> {
    let lock = berth_conda::Lock {
        packages: lock.to_vec(),
    };
    log(format!("Installing {}", lock.describe().join(", ")));
    let prefix = upper.join(berth_conda::PREFIX.trim_start_matches('/'));
    std::fs::create_dir_all(&prefix)?;
    let count = runner.install_conda(&lock, specs, &prefix)?;
    log(format!(
        "Installed {count} conda packages into {}",
        berth_conda::PREFIX
    ));
    Ok(0)
}

/// The key of the base: its manifest digest plus the interpreter and workdir the steps use.
fn base_key(plan: &BuildPlan, base: &ResolvedImage) -> String {
    let mut h = Sha256::new();
    h.update(b"berth-build-v1\0");
    h.update(base.manifest_digest.as_bytes());
    h.update(b"\0");
    h.update(plan.python.as_bytes());
    h.update(b"\0");
    h.update(plan.workdir.as_deref().unwrap_or("").as_bytes());
    hex::encode(h.finalize())
}

/// Each step's key: its parent's key plus the step. An unchanged prefix keeps its keys, so
/// only steps after the first change run again.
fn step_keys(plan: &BuildPlan, base: &ResolvedImage) -> Vec<String> {
    let mut parent = base_key(plan, base);
    plan.steps
        .iter()
        .map(|step| {
            let mut h = Sha256::new();
            h.update(parent.as_bytes());
            h.update(b"\0");
            h.update(serde_json::to_vec(step).unwrap_or_default());
            parent = hex::encode(h.finalize());
            parent.clone()
        })
        .collect()
}

fn base_env(config: &ImageConfig) -> Vec<(String, String)> {
    let mut env = vec![("PATH".to_string(), berth_api::DEFAULT_PATH.to_string())];
    for entry in &config.env {
        let (k, v) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
        set_env(&mut env, k, v);
    }
    env
}

fn set_env(env: &mut Vec<(String, String)>, k: &str, v: &str) {
    match env.iter_mut().find(|(name, _)| name == k) {
        Some(entry) => entry.1 = v.to_string(),
        None => env.push((k.to_string(), v.to_string())),
    }
}

/// Refuses a python_version the base does not have, naming those it has.
fn check_python(
    plan: &BuildPlan,
    base: &ResolvedImage,
    store: &ContentStore,
) -> Result<(), BuildError> {
    let uses_python =
        plan.python != "python3" || plan.steps.iter().any(|s| matches!(s, Step::Pip { .. }));
    if !uses_python {
        return Ok(());
    }
    let mut available = std::collections::BTreeSet::new();
    for layer in store.layer_dirs(base) {
        for dir in ["usr/bin", "usr/local/bin", "bin"] {
            let Ok(entries) = std::fs::read_dir(layer.join(dir)) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let versioned = name
                    .strip_prefix("python3.")
                    .is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()));
                if versioned || name == "python3" {
                    available.insert(name);
                }
            }
        }
    }
    if available.contains(&plan.python) {
        return Ok(());
    }
    let listed: Vec<&str> = available
        .iter()
        .map(String::as_str)
        .filter(|n| *n != "python3")
        .collect();
    Err(BuildError::UnknownPython {
        wanted: plan.python.clone(),
        base: plan
            .base_image
            .clone()
            .unwrap_or_else(|| "(default base)".into()),
        available: if listed.is_empty() {
            "none".into()
        } else {
            listed.join(", ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::plan::BuildPlan;
    use berth_api::ImageSpec;
    use std::sync::Mutex;

    /// Runs nothing: writes a file named after the step into the upper directory, or fails
    /// the commands that say `fail`.
    #[derive(Default)]
    struct FakeRunner {
        ran: Mutex<Vec<String>>,
    }

    impl StepRunner for FakeRunner {
        fn run_step(
            &self,
            step: &StepRun,
            log: BuildLog<'_>,
            _c: &AtomicBool,
        ) -> Result<i32, StepError> {
            self.ran.lock().expect("lock").push(step.command.clone());
            log(format!("running {}", step.command));
            if step.command.contains("fail") {
                log("boom".into());
                return Ok(3);
            }
            std::fs::create_dir_all(&step.upper)?;
            std::fs::write(step.upper.join("marker"), &step.command)?;
            Ok(0)
        }

        fn install_conda(
            &self,
            lock: &berth_conda::Lock,
            specs: &[String],
            dir: &std::path::Path,
        ) -> Result<usize, StepError> {
            self.ran
                .lock()
                .expect("lock")
                .push(format!("conda {}", lock.packages.join(",")));
            if specs.iter().any(|s| s.contains("fail")) {
                std::fs::write(dir.join("half-written"), "x")?;
                return Err("the channel went away".into());
            }
            std::fs::create_dir_all(dir.join("bin"))?;
            for spec in specs {
                std::fs::write(dir.join("bin").join(spec), "#!/bin/sh\n")?;
            }
            Ok(specs.len())
        }
    }

    fn setup() -> (tempfile::TempDir, ContentStore, ResolvedImage) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = ContentStore::open(dir.path()).expect("store");
        let base_layer = format!("sha256:{}", "c".repeat(64));
        let bin = store.layer_dir(&base_layer).join("usr/bin");
        std::fs::create_dir_all(&bin).expect("mkdir");
        std::fs::write(bin.join("python3.11"), "").expect("python");
        let base = ResolvedImage {
            reference: "base".into(),
            manifest_digest: format!("sha256:{}", "d".repeat(64)),
            config: ImageConfig::default(),
            layer_digests: vec![base_layer],
        };
        (dir, store, base)
    }

    fn plan(commands: &[&str]) -> BuildPlan {
        BuildPlan::from_spec(&ImageSpec {
            commands: commands.iter().map(|c| c.to_string()).collect(),
            env_vars: [("GREETING".to_string(), "hi".to_string())]
                .into_iter()
                .collect(),
            ..ImageSpec::default()
        })
        .expect("plan")
    }

    fn run(
        store: &ContentStore,
        base: &ResolvedImage,
        plan: &BuildPlan,
        runner: &FakeRunner,
    ) -> (Result<(ResolvedImage, bool), BuildError>, Vec<String>) {
        let lines = Mutex::new(Vec::new());
        let log = |l: String| lines.lock().expect("lock").push(l);
        let result = build(plan, base, store, runner, &log, &AtomicBool::new(false));
        (result, lines.into_inner().expect("lines"))
    }

    fn conda_plan(spec: &str, lock: &str) -> BuildPlan {
        let mut plan = BuildPlan::from_spec(&ImageSpec {
            conda_packages: vec![spec.into()],
            commands: vec!["after".into()],
            ..ImageSpec::default()
        })
        .expect("plan");
        for step in plan.conda_steps() {
            if let Step::Conda { lock: l, .. } = step {
                *l = vec![lock.to_string()];
            }
        }
        plan
    }

    #[test]
    fn a_conda_layer_goes_to_opt_conda_first_on_path_and_is_keyed_by_its_solve() {
        let (_d, store, base) = setup();
        let runner = FakeRunner::default();
        let (built, _) = run(&store, &base, &conda_plan("hello", "hello-1.0"), &runner);
        let (image, _) = built.expect("builds");
        let conda_layer = store.layer_dir(&image.layer_digests[1]);
        assert!(conda_layer.join("opt/conda/bin/hello").is_file());
        assert!(image
            .config
            .env
            .iter()
            .any(|e| e.starts_with("PATH=/opt/conda/bin:")));
        assert!(image
            .config
            .env
            .contains(&"CONDA_PREFIX=/opt/conda".to_string()));
        // The same solve is cached; a new package for the same spec is a new layer.
        let (again, log) = run(&store, &base, &conda_plan("hello", "hello-1.0"), &runner);
        assert!(again.expect("builds").1, "{log:?}");
        run(&store, &base, &conda_plan("hello", "hello-1.1"), &runner)
            .0
            .expect("builds");
        let ran = runner.ran.lock().expect("lock").clone();
        assert_eq!(
            ran,
            ["conda hello-1.0", "after", "conda hello-1.1", "after"]
        );
    }

    #[test]
    fn a_failed_conda_install_keeps_nothing() {
        let (_d, store, base) = setup();
        let runner = FakeRunner::default();
        let (result, _) = run(&store, &base, &conda_plan("fail", "fail-1"), &runner);
        let err = result.expect_err("fails").to_string();
        assert!(err.contains("the channel went away"), "{err}");
        let (result, _) = run(&store, &base, &conda_plan("fail", "fail-1"), &runner);
        assert!(result.is_err(), "a failure is not cached");
        let tmp = std::fs::read_dir(store.tmp_path(""))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(tmp, 0, "no half-written layer is left");
    }

    #[test]
    fn a_second_build_of_the_same_image_waits_for_the_first() {
        let first = BuildLock::acquire("berth-build/lock-test", &|_| {});
        let waited = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let second = s.spawn(|| {
                let log = |line: String| {
                    assert!(line.contains("Waiting"), "{line}");
                    waited.store(true, Ordering::SeqCst);
                };
                let _lock = BuildLock::acquire("berth-build/lock-test", &log);
            });
            std::thread::sleep(std::time::Duration::from_millis(100));
            assert!(!second.is_finished(), "the second build went ahead");
            drop(first);
            second.join().expect("joins");
        });
        assert!(waited.load(Ordering::SeqCst));
        // Other images never wait.
        let _a = BuildLock::acquire("berth-build/lock-a", &|_| panic!("waited"));
        let _b = BuildLock::acquire("berth-build/lock-b", &|_| panic!("waited"));
    }

    #[test]
    fn second_build_is_a_full_cache_hit() {
        let (_d, store, base) = setup();
        let runner = FakeRunner::default();
        let (first, log) = run(&store, &base, &plan(&["a", "b"]), &runner);
        let (image, cached) = first.expect("builds");
        assert!(!cached);
        assert!(log.contains(&"=> Building image".to_string()));
        assert_eq!(image.layer_digests.len(), 3);
        assert!(image.config.env.contains(&"GREETING=hi".to_string()));
        let (again, log) = run(&store, &base, &plan(&["a", "b"]), &runner);
        assert!(again.expect("builds").1);
        assert_eq!(log, ["=> Using cached image"]);
        assert_eq!(
            runner.ran.lock().expect("lock").len(),
            2,
            "nothing ran the second time"
        );
    }

    #[test]
    fn changing_the_last_command_reruns_only_it() {
        let (_d, store, base) = setup();
        let runner = FakeRunner::default();
        run(&store, &base, &plan(&["a", "b"]), &runner)
            .0
            .expect("builds");
        let (result, log) = run(&store, &base, &plan(&["a", "c"]), &runner);
        result.expect("builds");
        assert!(
            log.iter().any(|l| l == "=> Step 2/3: RUN a (cached)"),
            "{log:?}"
        );
        assert_eq!(*runner.ran.lock().expect("lock"), ["a", "b", "c"]);
    }

    #[test]
    fn a_failing_step_reports_code_and_tail_and_caches_nothing() {
        let (_d, store, base) = setup();
        let runner = FakeRunner::default();
        let (result, _) = run(&store, &base, &plan(&["a", "fail now"]), &runner);
        let err = result.expect_err("fails");
        let text = err.to_string();
        assert!(
            text.contains("step 3/3 (RUN fail now) failed with exit code 3"),
            "{text}"
        );
        assert!(text.contains("boom"), "{text}");
        // Retrying runs the failed step again (nothing of it was cached) but not "a".
        let (_, _) = run(&store, &base, &plan(&["a", "fail now"]), &runner);
        assert_eq!(
            *runner.ran.lock().expect("lock"),
            ["a", "fail now", "fail now"]
        );
        assert_eq!(
            std::fs::read_dir(store.tmp_path("")).expect("tmp").count(),
            0,
            "no half-written layer"
        );
    }

    #[test]
    fn prune_keeps_built_images_and_their_oci_blobs() {
        let (_d, store, base) = setup();
        let runner = FakeRunner::default();
        let (image, _) = run(&store, &base, &plan(&["a"]), &runner)
            .0
            .expect("builds");
        let orphan = format!("sha256:{}", "f".repeat(64));
        std::fs::write(store.blob_path(&orphan), "x").expect("orphan blob");
        let pruned = store.prune(&|_| false);
        assert!(!store.blob_path(&orphan).exists(), "an orphan blob goes");
        assert!(pruned.freed_bytes >= 1);
        assert!(
            store.blob_path(&image.manifest_digest).exists(),
            "the manifest stays"
        );
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(store.blob_path(&image.manifest_digest)).expect("read"),
        )
        .expect("json");
        for layer in manifest["layers"].as_array().expect("layers") {
            let digest = layer["digest"].as_str().expect("digest");
            assert!(
                store.blob_path(digest).exists(),
                "layer blob {digest} stays"
            );
        }
        let (_, cached) = run(&store, &base, &plan(&["a"]), &runner)
            .0
            .expect("builds");
        assert!(cached, "the build cache survives prune");
    }

    #[test]
    fn unknown_python_names_the_available_ones() {
        let (_d, store, base) = setup();
        let plan = BuildPlan::from_spec(&ImageSpec {
            python_version: Some("python3.9".into()),
            ..ImageSpec::default()
        })
        .expect("plan");
        let err = run(&store, &base, &plan, &FakeRunner::default())
            .0
            .expect_err("refused");
        assert!(err.to_string().contains("available: python3.11"), "{err}");
    }
}
