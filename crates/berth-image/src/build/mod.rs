//! Building images described in code (or, through [`DockerfileBuild`], from a Dockerfile
//! that a real builder runs): a base (a registry image, or berth's default Debian
//! base made with mmdebstrap) plus ordered steps, each step's filesystem change kept as a
//! cached layer keyed by its parent's key and the step.
//!
//! The steps themselves run in containers, which this crate does not create: the caller
//! supplies a [`StepRunner`] (the node agent, with the same runtime and network as pods).

mod base;
mod dockerfile;
mod glibc;
mod plan;
mod runner;

pub use base::{default_base_image, DEFAULT_BASE_REFERENCE};
pub use dockerfile::DockerfileBuild;
pub use glibc::image_glibc;
pub use plan::{BuildPlan, PlanError, Step};
pub use runner::{build, BuildError, BuildLock, BuildLog, StepError, StepRun, StepRunner};
