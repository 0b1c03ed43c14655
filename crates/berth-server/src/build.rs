//! The node's side of image builds: resolving the base, and running each build step in a
//! container on the same runtime and network as pods.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth_api::ImageSpec;
use berth_image::build::{self, BuildLog, BuildPlan, StepRun, StepRunner};
use berth_image::{parse_reference, PullProgress, ResolvedImage};
use berth_runtime::{ResourceLimits, RunSpec};
use rand::Rng;

use crate::node::{cgroups_path, LocalNode, NodeError, ProgressFn};

/// Where build steps find the trusted CA bundle; it is in a layer of its own that is never
/// part of the image, so the certificate is not baked in.
const BUILD_CA_PATH: &str = "/etc/berth-build/ca-certificates.crt";

/// Resources of a build container: generous, builds are short and trusted by their owner.
const BUILD_LIMITS: ResourceLimits = ResourceLimits {
    cpu_millis: 2000,
    memory_mib: 4096,
    pids: 16384,
};

impl LocalNode {
    /// Builds (or finds in the cache) the image of `spec`, streaming log lines.
    pub async fn build_image(
        self: &Arc<Self>,
        spec: &ImageSpec,
        log: ProgressFn,
        cancelled: Arc<AtomicBool>,
    ) -> Result<(ResolvedImage, bool), NodeError> {
        let plan = BuildPlan::from_spec(spec).map_err(|e| NodeError::Io(e.to_string()))?;
        let base = match &plan.base_image {
            Some(base) => {
                let reference = parse_reference(base)?;
                let report = log.clone();
                let name = base.clone();
                let on_progress =
                    move |p: PullProgress| report(format!("=> Pulling base image {name}: {p}"));
                self.puller.resolve(&reference, &on_progress).await?
            }
            None => {
                let node = self.clone();
                let log = log.clone();
                tokio::task::spawn_blocking(move || {
                    build::default_base_image(node.puller.store(), &*log)
                })
                .await
                .map_err(|e| NodeError::Io(format!("base image task: {e}")))??
            }
        };
        let node = self.clone();
        tokio::task::spawn_blocking(move || {
            build::build(
                &plan,
                &base,
                node.puller.store(),
                node.as_ref(),
                &*log,
                &cancelled,
            )
        })
        .await
        .map_err(|e| NodeError::Io(format!("build task: {e}")))?
        .map_err(NodeError::from)
    }

    /// Removes build containers a stopped server left behind (their builds are gone with it).
    pub fn clean_interrupted_builds(&self) {
        let Ok(entries) = std::fs::read_dir(self.containers_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if !id.starts_with("build-") {
                continue;
            }
            tracing::info!(container = %id, "removing an interrupted build container");
            if let Err(e) = self.teardown_blocking(&id) {
                tracing::warn!(container = %id, "cleaning an interrupted build: {e}");
            }
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }

    fn build_dir(&self, id: &str) -> PathBuf {
        self.containers_dir().join(id)
    }

    /// A one-file layer on top of the image during a build: the CA bundle and the files
    /// the runtime mounts over, so none of them lands in the step's layer.
    fn injection_layer(&self, dir: &Path) -> Result<PathBuf, String> {
        let layer = dir.join("inject");
        let etc = layer.join("etc");
        std::fs::create_dir_all(etc.join("berth-build")).map_err(|e| e.to_string())?;
        for name in ["resolv.conf", "hosts", "hostname"] {
            std::fs::write(etc.join(name), b"").map_err(|e| e.to_string())?;
        }
        if let Some(ca) = self.build_ca() {
            let target = layer.join(BUILD_CA_PATH.trim_start_matches('/'));
            std::fs::copy(ca, &target)
                .map_err(|e| format!("copying the CA bundle {}: {e}", ca.display()))?;
        }
        Ok(layer)
    }

    fn run_step_blocking(
        &self,
        id: &str,
        step: &StepRun,
        log: BuildLog<'_>,
        cancelled: &AtomicBool,
    ) -> Result<i32, String> {
        let dir = self.build_dir(id);
        let bundle = dir.join("bundle");
        let rootfs = bundle.join("rootfs");
        let etc = dir.join("etc");
        for d in [&bundle, &etc] {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let inject = self.injection_layer(&dir)?;
        let pod_net = self.network.setup(id).map_err(|e| e.to_string())?;
        let mut layers = step.layers.clone();
        layers.push(inject);
        berth_runtime::mount_overlay(&layers, &step.upper, &dir.join("work"), &rootfs)
            .map_err(|e| e.to_string())?;
        crate::node::write_etc_files(&etc, "build", &[]).map_err(|e| e.to_string())?;

        let mut env = step.env.clone();
        env.push("HOME=/root".into());
        env.push("DEBIAN_FRONTEND=noninteractive".into());
        if self.build_ca().is_some() {
            for var in [
                "SSL_CERT_FILE",
                "PIP_CERT",
                "REQUESTS_CA_BUNDLE",
                "CURL_CA_BUNDLE",
                "GIT_SSL_CAINFO",
                "NODE_EXTRA_CA_CERTS",
            ] {
                env.push(format!("{var}={BUILD_CA_PATH}"));
            }
        }
        let run = RunSpec {
            id: id.to_string(),
            args: vec!["/bin/sh".into(), "-c".into(), step.command.clone()],
            env,
            cwd: step.workdir.clone(),
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            hostname: "build".into(),
            netns: pod_net.netns,
            limits: BUILD_LIMITS,
            cgroups_path: cgroups_path(id),
            etc_files: vec![
                (etc.join("resolv.conf"), "/etc/resolv.conf"),
                (etc.join("hosts"), "/etc/hosts"),
                (etc.join("hostname"), "/etc/hostname"),
            ],
        };
        let spec = berth_runtime::build_spec(&run).map_err(|e| e.to_string())?;
        berth_runtime::write_bundle(&bundle, &spec).map_err(|e| e.to_string())?;

        let (out_r, out_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
        let err_w = out_w.try_clone().map_err(|e| e.to_string())?;
        let mut child = self
            .runtime
            .run_foreground(id, &bundle, &dir.join("runtime.log"), out_w, err_w)
            .map_err(|e| e.to_string())?;
        let reader = std::thread::scope(|scope| {
            let lines = scope.spawn(|| {
                for line in BufReader::new(std::fs::File::from(out_r)).lines() {
                    match line {
                        Ok(line) => log(format!("   {line}")),
                        Err(_) => break,
                    }
                }
            });
            let status = loop {
                match child.try_wait() {
                    Ok(Some(status)) => break Ok(status),
                    Ok(None) => {}
                    Err(e) => break Err(e.to_string()),
                }
                if cancelled.load(Ordering::SeqCst) {
                    let _ = self.runtime.kill(id, "KILL", true);
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            let _ = lines.join();
            status
        });
        let status = reader?;
        Ok(status
            .code()
            .unwrap_or(128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)))
    }
}

impl StepRunner for LocalNode {
    fn run_step(
        &self,
        step: &StepRun,
        log: BuildLog<'_>,
        cancelled: &AtomicBool,
    ) -> Result<i32, String> {
        let id = format!("{}-{:08x}", step.id, rand::rng().random::<u32>());
        let result = self.run_step_blocking(&id, step, log, cancelled);
        // The step's upper directory is the caller's; everything else goes.
        let cleanup = self.teardown_blocking(&id);
        let _ = std::fs::remove_dir_all(self.build_dir(&id));
        match (result, cleanup) {
            (Ok(code), Ok(())) => Ok(code),
            (Ok(_), Err(e)) => Err(format!("cleaning up the build container: {e}")),
            (Err(e), Ok(())) => Err(e),
            (Err(e), Err(c)) => Err(format!("{e}; cleaning up also failed: {c}")),
        }
    }
}
