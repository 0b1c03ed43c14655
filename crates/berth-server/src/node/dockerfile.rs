//! Dockerfile builds: a real builder (Debian's buildah) runs the Dockerfile on the node,
//! each `RUN` in runc inside a berth build network namespace (egress through the pod
//! bridge and its guard chain, never the host's loopback), and the result comes into the
//! content store as an OCI image, layers shared with pulled images.
//!
//! buildah keeps its own storage and layer cache under `<state>/buildah`; berth's own
//! cache sits in front of it: the same Dockerfile, context and build args are the stored
//! image, and buildah does not run at all.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_image::build::{BuildLock, BuildLog, DockerfileBuild};
use berth_image::{ContentStore, PullOptions, ResolvedImage};
use rand::Rng;

use super::code::CodeStore;
use super::sandboxes::Sandboxes;
use super::NodeError;

/// The builder binary (Debian package `buildah`).
const BUILDAH: &str = "buildah";

/// Where `RUN` steps find the host's CA bundle: inside the container's `/dev` tmpfs, so
/// the mount point never lands in a layer (nor, of course, the certificates).
pub const RUN_CA_PATH: &str = "/dev/berth-build-ca.crt";

/// How many lines of a failed build's output the error quotes.
const FAILURE_TAIL_LINES: usize = 20;

/// How long buildah gets to clean up after a cancel before it is killed.
const CANCEL_GRACE: Duration = Duration::from_secs(10);

/// Build containers (and their network namespaces) are named `build-…`, so an interrupted
/// build's are removed at the next start like the other builds'.
const ID_PREFIX: &str = "build-df-";

#[derive(Debug, thiserror::Error)]
pub enum DockerfileError {
    #[error("the Dockerfile build failed with exit code {code}:\n{tail}")]
    Failed { code: i32, tail: String },
    #[error("the build was cancelled")]
    Cancelled,
    #[error("the build context {0} is not on this node; upload it first")]
    ContextMissing(String),
    #[error("running {BUILDAH}: {0} (is the buildah package installed?)")]
    Spawn(std::io::Error),
}

pub struct DockerfileBuilder {
    store: ContentStore,
    sandboxes: Arc<Sandboxes>,
    code: Arc<CodeStore>,
    /// `<state>/buildah`: buildah's storage, its configuration, and scratch directories.
    dir: PathBuf,
    pull: PullOptions,
    ca_bundle: Option<PathBuf>,
    /// The berth binary: `berth env-runtime` is buildah's runtime when there is a CA bundle.
    berth_exe: PathBuf,
}

impl DockerfileBuilder {
    pub fn new(
        store: ContentStore,
        sandboxes: Arc<Sandboxes>,
        code: Arc<CodeStore>,
        dir: PathBuf,
        pull: PullOptions,
        ca_bundle: Option<PathBuf>,
        berth_exe: PathBuf,
    ) -> Result<Self, NodeError> {
        for sub in ["work", "tmp"] {
            let path = dir.join(sub);
            // Scratch of builds a stopped server left behind.
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).map_err(NodeError::io(&path))?;
        }
        let builder = DockerfileBuilder {
            store,
            sandboxes,
            code,
            dir,
            pull,
            ca_bundle,
            berth_exe,
        };
        builder.remove_interrupted();
        Ok(builder)
    }

    /// Builds the Dockerfile, or finds its image in the store. Blocking.
    pub fn build(
        &self,
        build: &DockerfileBuild,
        log: BuildLog<'_>,
        cancelled: &AtomicBool,
    ) -> Result<(ResolvedImage, bool), NodeError> {
        let reference = build.reference();
        if let Some(image) = self.store.lookup(&reference) {
            log("=> Using cached image".into());
            return Ok((image, true));
        }
        let _building = BuildLock::acquire(&reference, log);
        if let Some(image) = self.store.lookup(&reference) {
            log("=> Using cached image".into());
            return Ok((image, true));
        }
        let context = match &build.context {
            Some(digest) => Some(
                self.code
                    .path(digest)
                    .ok_or_else(|| DockerfileError::ContextMissing(digest.clone()))?,
            ),
            None => None,
        };
        let id = format!("{ID_PREFIX}{:08x}", rand::rng().random::<u32>());
        let work = self.dir.join("work").join(&id);
        let result = self.build_in(
            build,
            &id,
            &work,
            context.as_deref(),
            &reference,
            log,
            cancelled,
        );
        let _ = std::fs::remove_dir_all(&work);
        let cleanup = self.sandboxes.remove(&id);
        let _ = std::fs::remove_dir_all(self.sandboxes.dir(&id).path());
        let image = match (result, cleanup) {
            (Ok(image), Ok(())) => image,
            (Err(e), Ok(())) => return Err(e),
            (Ok(_), Err(c)) => {
                return Err(NodeError::Cleanup {
                    what: "the build's network".into(),
                    source: Box::new(c),
                })
            }
            (Err(e), Err(c)) => {
                return Err(NodeError::WithCleanup {
                    action: "the Dockerfile build".into(),
                    error: Box::new(e),
                    cleanup: Box::new(c),
                })
            }
        };
        log(format!("=> Image built: {reference}"));
        Ok((image, false))
    }

    #[allow(clippy::too_many_arguments)]
    fn build_in(
        &self,
        build: &DockerfileBuild,
        id: &str,
        work: &Path,
        context: Option<&Path>,
        reference: &str,
        log: BuildLog<'_>,
        cancelled: &AtomicBool,
    ) -> Result<ResolvedImage, NodeError> {
        std::fs::create_dir_all(work).map_err(NodeError::io(work))?;
        let dockerfile = work.join("Dockerfile");
        std::fs::write(&dockerfile, &build.text).map_err(NodeError::io(&dockerfile))?;
        let context = match context {
            Some(dir) => dir.to_path_buf(),
            None => {
                let empty = work.join("context");
                std::fs::create_dir_all(&empty).map_err(NodeError::io(&empty))?;
                empty
            }
        };
        self.write_config()?;
        // The directory marks the build for `clean_interrupted` should the server stop.
        let marker = self.sandboxes.dir(id);
        std::fs::create_dir_all(marker.path()).map_err(NodeError::io(marker.path()))?;
        let netns = self.sandboxes.open_network(id)?;

        log("=> Building image from the Dockerfile".into());
        let iid = work.join("image-id");
        let mut cmd = self.buildah();
        cmd.arg("build")
            // --force-rm: a failed step's container (and its mount) goes too.
            .args([
                "--isolation",
                "oci",
                "--layers",
                "--force-rm",
                "--http-proxy=false",
            ])
            .arg(format!("--network=ns:{}", netns.display()))
            .args([
                "--memory",
                "4g",
                "--cpu-period",
                "100000",
                "--cpu-quota",
                "200000",
            ])
            .arg("--file")
            .arg(&dockerfile)
            .arg("--iidfile")
            .arg(&iid);
        if let Some(ca) = &self.ca_bundle {
            // The bundle for RUN steps, and through berth's runtime wrapper the variables
            // that point tools at it: in each step's process, never in the image's config.
            cmd.arg("--volume")
                .arg(format!("{}:{RUN_CA_PATH}:ro", ca.display()))
                .arg("--runtime")
                .arg(self.dir.join("runtime"));
        }
        for (name, value) in &build.build_args {
            cmd.arg("--build-arg").arg(format!("{name}={value}"));
        }
        cmd.arg(&context);
        let (code, tail) = run_logged(cmd, log, cancelled)?;
        if cancelled.load(Ordering::SeqCst) {
            return Err(DockerfileError::Cancelled.into());
        }
        if code != 0 {
            return Err(DockerfileError::Failed { code, tail }.into());
        }
        let image_id = std::fs::read_to_string(&iid).map_err(NodeError::io(&iid))?;
        let layout = work.join("oci");
        let mut push = self.buildah();
        push.arg("push")
            .arg("--quiet")
            .arg(image_id.trim())
            .arg(format!("oci:{}", layout.display()));
        let (code, tail) = run_logged(push, &|_| {}, cancelled)?;
        if code != 0 {
            return Err(DockerfileError::Failed { code, tail }.into());
        }
        Ok(self.store.import_oci_layout(&layout, reference)?)
    }

    /// buildah with its own storage and configuration, and a clean environment (the
    /// server's own variables never reach a build).
    fn buildah(&self) -> Command {
        let mut cmd = Command::new(BUILDAH);
        cmd.env_clear()
            .env("PATH", berth_api::DEFAULT_PATH)
            .env("HOME", &self.dir)
            .env("TMPDIR", self.dir.join("tmp"))
            .env(
                "CONTAINERS_REGISTRIES_CONF",
                self.dir.join("registries.conf"),
            )
            .env("REGISTRY_AUTH_FILE", self.dir.join("auth.json"))
            .arg("--root")
            .arg(self.dir.join("storage"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .args(["--storage-driver", "overlay"])
            // No private bind mount of the storage directory over itself, which the driver
            // would leave behind after every run.
            .args(["--storage-opt", "overlay.skip_mount_home=true"]);
        cmd
    }

    /// Removes the working containers (and their mounts) of builds a stopped server left
    /// behind. Only at start, when no build runs.
    fn remove_interrupted(&self) {
        if !self.dir.join("storage").is_dir() {
            return;
        }
        let mut cmd = self.buildah();
        cmd.args(["rm", "--all"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Err(e) = cmd.status() {
            tracing::warn!("removing interrupted Dockerfile builds: {e}");
        }
    }

    /// The server's registry settings in buildah's terms: `--insecure-registry` and
    /// `--registry-mirror` apply to `FROM`, credentials from `BERTH_REGISTRY_AUTH`.
    fn write_config(&self) -> Result<(), NodeError> {
        let env: String = super::build::CA_VARIABLES
            .iter()
            .map(|v| format!("{v}={RUN_CA_PATH}\n"))
            .collect();
        let runtime = format!(
            "#!/bin/sh\nexec {} env-runtime --runtime runc --env-file {} -- \"$@\"\n",
            shell_quote(&self.berth_exe.display().to_string()),
            shell_quote(&self.dir.join("run-env").display().to_string()),
        );
        let files = [
            ("registries.conf", registries_conf(&self.pull), 0o600),
            (
                "auth.json",
                self.pull.credentials.auth_json().to_string(),
                0o600,
            ),
            ("run-env", env, 0o644),
            ("runtime", runtime, 0o755),
        ];
        for (name, text, mode) in files {
            use std::os::unix::fs::PermissionsExt;
            let path = self.dir.join(name);
            let tmp = self
                .dir
                .join(format!(".{name}.{:08x}", rand::rng().random::<u32>()));
            std::fs::write(&tmp, text).map_err(NodeError::io(&tmp))?;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
                .map_err(NodeError::io(&tmp))?;
            std::fs::rename(&tmp, &path).map_err(NodeError::io(&path))?;
        }
        Ok(())
    }
}

/// Single-quotes a word for `sh`.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// registries.conf (v2) for the server's pull options. Short names mean Docker Hub, as
/// they do for pulls.
fn registries_conf(options: &PullOptions) -> String {
    let quote = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut text = String::from(
        "unqualified-search-registries = [\"docker.io\"]\nshort-name-mode = \"permissive\"\n",
    );
    let mut registries: BTreeMap<&str, (bool, Vec<&str>)> = BTreeMap::new();
    for host in &options.insecure_registries {
        registries.entry(host.as_str()).or_default().0 = true;
    }
    for mirror in &options.mirrors {
        registries
            .entry(mirror.from.as_str())
            .or_default()
            .1
            .push(mirror.to.as_str());
    }
    for (host, (insecure, mirrors)) in registries {
        text.push_str(&format!(
            "\n[[registry]]\nlocation = {}\ninsecure = {insecure}\n",
            quote(host)
        ));
        for to in mirrors {
            let insecure = options.insecure_registries.iter().any(|h| h == to);
            text.push_str(&format!(
                "[[registry.mirror]]\nlocation = {}\ninsecure = {insecure}\n",
                quote(to)
            ));
        }
    }
    text
}

/// Runs `cmd` with its output, both streams, sent to `log` a line at a time; returns its
/// exit code and the last lines. A cancel stops it: SIGTERM to its process group, then
/// SIGKILL after [`CANCEL_GRACE`].
fn run_logged(
    mut cmd: Command,
    log: BuildLog<'_>,
    cancelled: &AtomicBool,
) -> Result<(i32, String), NodeError> {
    let (reader, writer) = std::io::pipe().map_err(|e| DockerfileError::Spawn(e).into_node())?;
    let writer2 = writer
        .try_clone()
        .map_err(|e| DockerfileError::Spawn(e).into_node())?;
    cmd.stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| DockerfileError::Spawn(e).into_node())?;
    drop(cmd);
    let tail = Mutex::new(VecDeque::new());
    let status = std::thread::scope(|scope| {
        scope.spawn(|| {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut t) = tail.lock() {
                    if t.len() == FAILURE_TAIL_LINES {
                        t.pop_front();
                    }
                    t.push_back(line.clone());
                }
                log(format!("   {line}"));
            }
        });
        let mut stopping: Option<Instant> = None;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) => {}
                Err(e) => break Err(e),
            }
            if cancelled.load(Ordering::SeqCst) {
                let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
                match stopping {
                    None => {
                        let _ = nix::sys::signal::kill(group, nix::sys::signal::SIGTERM);
                        stopping = Some(Instant::now());
                    }
                    Some(at) if at.elapsed() > CANCEL_GRACE => {
                        let _ = nix::sys::signal::kill(group, nix::sys::signal::SIGKILL);
                    }
                    Some(_) => {}
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .map_err(|e| DockerfileError::Spawn(e).into_node())?;
    use std::os::unix::process::ExitStatusExt;
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    let tail = tail
        .into_inner()
        .map(|t| t.into_iter().collect::<Vec<_>>().join("\n"))
        .unwrap_or_default();
    Ok((code, tail))
}

impl DockerfileError {
    fn into_node(self) -> NodeError {
        NodeError::Dockerfile(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_conf_names_insecure_registries_and_mirrors() {
        let options = PullOptions {
            insecure_registries: vec!["127.0.0.1:5000".into()],
            mirrors: vec!["docker.io=127.0.0.1:5000".parse().expect("mirror")],
            ..PullOptions::default()
        };
        let text = registries_conf(&options);
        assert!(text.contains("unqualified-search-registries = [\"docker.io\"]"));
        assert!(
            text.contains("location = \"127.0.0.1:5000\"\ninsecure = true\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "location = \"docker.io\"\ninsecure = false\n[[registry.mirror]]\nlocation = \"127.0.0.1:5000\"\ninsecure = true\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn output_lines_and_exit_code_come_back() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo one; echo two >&2; exit 7"]);
        let lines = Mutex::new(Vec::new());
        let log = |l: String| lines.lock().expect("lock").push(l);
        let (code, tail) = run_logged(cmd, &log, &AtomicBool::new(false)).expect("runs");
        assert_eq!(code, 7);
        assert!(tail.contains("one") && tail.contains("two"), "{tail}");
        assert_eq!(lines.lock().expect("lock").len(), 2);
    }

    #[test]
    fn a_cancel_stops_the_builder() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30"]);
        let cancelled = AtomicBool::new(true);
        let started = Instant::now();
        let (code, _) = run_logged(cmd, &|_| {}, &cancelled).expect("runs");
        assert_eq!(code, 128 + 15, "ended by SIGTERM");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
