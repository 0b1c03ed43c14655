//! The OCI runtimes a node offers: the server's default, and each other runtime whose binary
//! is installed. A pod names one (or takes the default); the choice is written into its
//! sandbox directory, so a restarted server stops and removes it with the same runtime.

use std::path::Path;

use berth_runtime::{OciRuntime, RuntimeKind};

const RECORD: &str = "runtime";

pub struct Runtimes {
    default: RuntimeKind,
    available: Vec<OciRuntime>,
}

impl Runtimes {
    /// `default` as configured, and the other runtimes found on PATH, each with its own state
    /// root under `state_root`.
    pub fn new(default: OciRuntime, state_root: &Path) -> Self {
        let kind = default.kind();
        let mut available = vec![default];
        for other in RuntimeKind::ALL {
            if other == kind {
                continue;
            }
            if let Some(binary) = other.find_binary() {
                available.push(OciRuntime::new(
                    other,
                    binary,
                    state_root.join(other.as_str()),
                ));
            }
        }
        Runtimes {
            default: kind,
            available,
        }
    }

    pub fn default_kind(&self) -> RuntimeKind {
        self.default
    }

    pub fn default_runtime(&self) -> &OciRuntime {
        // `new` puts the default first.
        &self.available[0]
    }

    pub fn get(&self, kind: RuntimeKind) -> Option<&OciRuntime> {
        self.available.iter().find(|r| r.kind() == kind)
    }

    pub fn kinds(&self) -> Vec<RuntimeKind> {
        self.available.iter().map(OciRuntime::kind).collect()
    }

    /// Notes in the container's directory which runtime runs it.
    pub fn record(dir: &Path, kind: RuntimeKind) -> std::io::Result<()> {
        std::fs::write(dir.join(RECORD), kind.as_str())
    }

    /// The runtime that runs the container in `dir`: as recorded, else the default (a
    /// container from before runtimes were per pod).
    pub fn of(&self, dir: &Path) -> &OciRuntime {
        std::fs::read_to_string(dir.join(RECORD))
            .ok()
            .and_then(|k| k.trim().parse().ok())
            .and_then(|k| self.get(k))
            .unwrap_or_else(|| self.default_runtime())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_runtime_is_found_again_and_a_missing_record_means_the_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtimes = Runtimes {
            default: RuntimeKind::Runc,
            available: vec![
                OciRuntime::new(RuntimeKind::Runc, "runc", "/state/runc"),
                OciRuntime::new(RuntimeKind::Gvisor, "runsc", "/state/gvisor"),
            ],
        };
        assert_eq!(runtimes.of(dir.path()).kind(), RuntimeKind::Runc);
        Runtimes::record(dir.path(), RuntimeKind::Gvisor).expect("record");
        assert_eq!(runtimes.of(dir.path()).kind(), RuntimeKind::Gvisor);
        assert_eq!(
            runtimes.kinds(),
            vec![RuntimeKind::Runc, RuntimeKind::Gvisor]
        );
    }
}
