//! Wire types shared by the berth server, the CLI and the tests.
//!
//! Nothing here depends on other berth crates: this is the contract of the HTTP API.

mod access;
mod deployment;
mod error;
mod exec;
mod files;
mod image;
mod node;
mod profile;
mod quantity;
mod resources;
mod signal;
mod types;

pub use access::*;
pub use deployment::*;
pub use error::{ApiError, ApiErrorBody, ErrorCode};
pub use exec::*;
pub use files::*;
pub use image::*;
pub use node::*;
pub use profile::{default_profile_path, ClientProfile, PROFILE_ENV};
pub use quantity::{parse_cpu_millis, parse_disk_mib, parse_memory_mib, QuantityError};
pub use resources::*;
pub use signal::{parse_stop_signal, DEFAULT_STOP_SIGNAL, MAX_STOP_GRACE_SECONDS};
pub use types::*;

/// Default keep-warm period of a pod: ten minutes without connections.
pub const DEFAULT_KEEP_WARM_SECONDS: i64 = 600;

/// The longest keep-warm period a pod may ask for (one year); `-1` means never idle out.
pub const MAX_KEEP_WARM_SECONDS: i64 = 365 * 24 * 3600;

/// The `PATH` a process gets when nothing sets one: containers, build steps, and the helper
/// programs berth runs (runtimes, CNI plugins), which must not inherit the server's.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
