//! Wire types shared by the berth server, the CLI and the tests.
//!
//! Nothing here depends on other berth crates: this is the contract of the HTTP API.

mod error;
mod image;
mod quantity;
mod types;

pub use error::{ApiError, ApiErrorBody, ErrorCode};
pub use image::*;
pub use quantity::{parse_cpu_millis, parse_memory_mib, QuantityError};
pub use types::*;

/// Default keep-warm period of a pod: ten minutes without connections.
pub const DEFAULT_KEEP_WARM_SECONDS: i64 = 600;
