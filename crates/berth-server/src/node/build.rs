//! The node's side of image builds: resolving the base, and running each build step in a
//! sandbox made by the same path as pods ([`Sandboxes`]), on the same runtime and network.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use berth_api::ImageSpec;
use berth_conda::{Conda, Lock, System};
use berth_image::build::{self, BuildLog, BuildPlan, Step, StepError, StepRun, StepRunner};
use berth_image::{parse_reference, PullProgress, Puller, ResolvedImage};
use berth_runtime::{ProcessPlan, ResourceLimits, SandboxDir};
use rand::Rng;

use super::dockerfile::DockerfileBuilder;
use super::sandboxes::{SandboxRequest, Sandboxes};
use super::{NodeError, ProgressFn};

/// Where build steps find the trusted CA bundle; it is in a layer of its own that is never
/// part of the image, so the certificate is not baked in.
const BUILD_CA_PATH: &str = "/etc/berth-build/ca-certificates.crt";

/// Variables that point common tools at the build CA bundle.
pub(super) const CA_VARIABLES: [&str; 6] = [
    "SSL_CERT_FILE",
    "PIP_CERT",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "NODE_EXTRA_CA_CERTS",
];

/// Resources of a build container: generous, builds are short and trusted by their owner.
const BUILD_LIMITS: ResourceLimits = ResourceLimits {
    cpu_millis: 2000,
    memory_mib: 4096,
    pids: 16384,
};

/// Build containers are named `build-…`; nothing else is.
const BUILD_PREFIX: &str = "build-";

pub struct Builder {
    puller: Arc<Puller>,
    sandboxes: Arc<Sandboxes>,
    /// The CA bundle build steps trust; `None` leaves the image's own.
    ca_bundle: Option<PathBuf>,
    /// Solves and installs conda steps, on the host (no conda in the image).
    conda: Conda,
    /// Builds images from a Dockerfile, with buildah.
    dockerfile: DockerfileBuilder,
}

impl Builder {
    pub fn new(
        puller: Arc<Puller>,
        sandboxes: Arc<Sandboxes>,
        ca_bundle: Option<PathBuf>,
        conda: Conda,
        dockerfile: DockerfileBuilder,
    ) -> Self {
        Builder {
            puller,
            sandboxes,
            ca_bundle,
            conda,
            dockerfile,
        }
    }

    /// Builds (or finds in the cache) the image of `spec`, streaming log lines. Returns the
    /// image and whether it was a full cache hit.
    pub async fn build(
        self: &Arc<Self>,
        spec: &ImageSpec,
        log: ProgressFn,
        cancelled: Arc<AtomicBool>,
    ) -> Result<(ResolvedImage, bool), NodeError> {
        let mut plan = crate::spec::validate_image_spec(spec).map_err(NodeError::Plan)?;
        if let Some(dockerfile) = plan.dockerfile.take() {
            let this = self.clone();
            return tokio::task::spawn_blocking(move || {
                this.dockerfile.build(&dockerfile, &*log, &cancelled)
            })
            .await
            .map_err(NodeError::task("the Dockerfile build"))?;
        }
        let base = self.base(&plan, &log).await?;
        self.solve_conda(&mut plan, &base, &log).await?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            build::build(
                &plan,
                &base,
                this.puller.store(),
                this.as_ref(),
                &*log,
                &cancelled,
            )
        })
        .await
        .map_err(NodeError::task("the build"))?
        .map_err(NodeError::from)
    }

    async fn base(&self, plan: &BuildPlan, log: &ProgressFn) -> Result<ResolvedImage, NodeError> {
        match &plan.base_image {
            Some(base) => {
                let reference = parse_reference(base)?;
                let report = log.clone();
                let name = base.clone();
                let on_progress =
                    move |p: PullProgress| report(format!("=> Pulling base image {name}: {p}"));
                Ok(self.puller.resolve(&reference, &on_progress).await?)
            }
            None => {
                let puller = self.puller.clone();
                let log = log.clone();
                tokio::task::spawn_blocking(move || {
                    build::default_base_image(puller.store(), &*log)
                })
                .await
                .map_err(NodeError::task("the default base image"))?
                .map_err(NodeError::from)
            }
        }
    }

    /// Solves each conda step against its channels, for the image `base` (its glibc), and
    /// fills in the solution: the step's cache key then covers the exact packages.
    async fn solve_conda(
        &self,
        plan: &mut BuildPlan,
        base: &ResolvedImage,
        log: &ProgressFn,
    ) -> Result<(), NodeError> {
        if plan.conda_steps().next().is_none() {
            return Ok(());
        }
        let system = System {
            glibc: build::image_glibc(self.puller.store(), base),
        };
        for step in plan.conda_steps() {
            let Step::Conda {
                packages,
                channels,
                lock,
            } = step
            else {
                continue;
            };
            let from = if channels.is_empty() {
                berth_conda::DEFAULT_CHANNEL.to_string()
            } else {
                channels.join(", ")
            };
            log(format!(
                "=> Solving conda packages {} from {from}",
                packages.join(", ")
            ));
            let solved = self.conda.solve(packages, channels, &system).await?;
            log(format!("=> Solved: {}", solved.describe().join(", ")));
            *lock = solved.packages;
        }
        Ok(())
    }

    /// Removes build containers a stopped server left behind (their builds are gone with it).
    pub fn clean_interrupted(&self) {
        let Ok(entries) = std::fs::read_dir(self.sandboxes.containers_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            if !id.starts_with(BUILD_PREFIX) {
                continue;
            }
            tracing::info!(container = %id, "removing an interrupted build container");
            if let Err(e) = self.sandboxes.remove(&id) {
                tracing::warn!(container = %id, "cleaning an interrupted build: {e}");
            }
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }

    /// A layer on top of the image during a build: the CA bundle and the files the runtime
    /// mounts over, so none of them lands in the step's layer.
    fn injection_layer(&self, dir: &Path) -> Result<PathBuf, NodeError> {
        let layer = dir.join("inject");
        let etc = layer.join("etc");
        let ca_dir = etc.join("berth-build");
        std::fs::create_dir_all(&ca_dir).map_err(NodeError::io(&ca_dir))?;
        for name in ["resolv.conf", "hosts", "hostname"] {
            let path = etc.join(name);
            std::fs::write(&path, b"").map_err(NodeError::io(&path))?;
        }
        if let Some(ca) = &self.ca_bundle {
            let target = layer.join(BUILD_CA_PATH.trim_start_matches('/'));
            std::fs::copy(ca, &target).map_err(NodeError::io(ca))?;
        }
        Ok(layer)
    }

    fn step_env(&self, step: &StepRun) -> Vec<String> {
        let mut env = step.env.clone();
        env.push("HOME=/root".into());
        env.push("DEBIAN_FRONTEND=noninteractive".into());
        if self.ca_bundle.is_some() {
            env.extend(CA_VARIABLES.iter().map(|v| format!("{v}={BUILD_CA_PATH}")));
        }
        env
    }

    fn run_in_sandbox(
        &self,
        id: &str,
        dir: &SandboxDir,
        step: &StepRun,
        log: BuildLog<'_>,
        cancelled: &AtomicBool,
    ) -> Result<i32, NodeError> {
        let mut layers = step.layers.clone();
        layers.push(self.injection_layer(dir.path())?);
        self.sandboxes.prepare(
            id,
            SandboxRequest {
                layers,
                upper: Some(step.upper.clone()),
                hostname: "build".into(),
                process: ProcessPlan {
                    args: vec!["/bin/sh".into(), "-c".into(), step.command.clone()],
                    env: self.step_env(step),
                    cwd: step.workdir.clone(),
                    user: None,
                },
                limits: BUILD_LIMITS,
                binds: Vec::new(),
                runtime: None,
                // Build steps install packages: they need the internet.
                egress: berth_net::Egress::Open,
                read_only_rootfs: false,
                user_namespace: false,
                disk_mib: None,
            },
        )?;
        let on_line = |line: String| log(format!("   {line}"));
        Ok(self.sandboxes.runtime().run_captured(
            id,
            &dir.bundle(),
            &dir.path().join("runtime.log"),
            &on_line,
            cancelled,
        )?)
    }
}

impl StepRunner for Builder {
    fn install_conda(&self, lock: &Lock, specs: &[String], dir: &Path) -> Result<usize, StepError> {
        // Builds run on a blocking thread of the server's runtime.
        let runtime = tokio::runtime::Handle::current();
        Ok(runtime.block_on(self.conda.install(lock, specs, dir))?)
    }

    fn run_step(
        &self,
        step: &StepRun,
        log: BuildLog<'_>,
        cancelled: &AtomicBool,
    ) -> Result<i32, StepError> {
        let id = format!("{}-{:08x}", step.id, rand::rng().random::<u32>());
        let dir = self.sandboxes.dir(&id);
        let result = self.run_in_sandbox(&id, &dir, step, log, cancelled);
        // The step's upper directory is the caller's; everything else goes.
        let cleanup = self.sandboxes.remove(&id);
        let _ = std::fs::remove_dir_all(dir.path());
        match (result, cleanup) {
            (Ok(code), Ok(())) => Ok(code),
            (Ok(_), Err(e)) => Err(Box::new(NodeError::Cleanup {
                what: "the build container".into(),
                source: Box::new(e),
            })),
            (Err(e), Ok(())) => Err(Box::new(e)),
            (Err(e), Err(c)) => Err(Box::new(NodeError::WithCleanup {
                action: "the build step".into(),
                error: Box::new(e),
                cleanup: Box::new(c),
            })),
        }
    }
}
