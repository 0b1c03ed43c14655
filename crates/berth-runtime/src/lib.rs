//! Running containers: OCI runtime specs (only this crate writes them), the runc/runsc
//! drivers, overlay root filesystems, cgroup readings and the `berth-shim` monitor.

mod cgroup;
pub mod disk;
mod driver;
pub mod env_wrapper;
mod error;
mod files;
pub mod idmap;
mod log_pump;
mod pod_files;
mod rootfs;
mod rotating_log;
pub mod sandbox;
mod seccomp;
pub mod shim;
mod spec;
mod user;

pub use cgroup::{oom_kill_count, pids_limit_hits, remove_empty_cgroup};
pub use driver::{tty_process, OciRuntime, RuntimeKind};
pub use error::RuntimeError;
pub use files::{ExitRecord, ShimFiles};
pub use idmap::IdRange;
pub use log_pump::pidfd_open;
pub use nix::sys::signal::Signal;
pub use pod_files::{
    FileEntry, FileKind, Listing, NewFile, OpenedFile, PodFiles, PodFilesError, MAX_LIST_ENTRIES,
};
pub use rootfs::{mount_overlay, unmount};
pub use rotating_log::RotatingLog;
pub use sandbox::{hostname_for, ProcessPlan, SandboxDir, SandboxPlan};
pub use spec::{build_spec, write_bundle, BindMount, ResourceLimits, RunSpec};
pub use user::resolve_user;
