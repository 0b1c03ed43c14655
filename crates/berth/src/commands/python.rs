//! Verbs that take a Pod from a Python module (`berth deploy app.py:pod`, `berth run
//! app.py:pod`) run the SDK's own module runner: only Python can load the module, and the
//! SDK then talks to the server like any client.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// The interpreter: `$BERTH_PYTHON`, else `python3` on PATH.
fn python() -> String {
    std::env::var("BERTH_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".into())
}

/// Runs `python3 -m berth <args>` and exits with its status.
pub fn run_sdk(args: &[&str]) -> Result<()> {
    let python = python();
    let found = Command::new(&python)
        .args(["-c", "import berth.cli"])
        .output()
        .with_context(|| format!("running {python} (set BERTH_PYTHON to another interpreter)"))?;
    if !found.status.success() {
        bail!(
            "the berth Python SDK is not installed for {python}: run scripts/install.sh, or \
             pip install sdk/python from the berth repository"
        );
    }
    let status = Command::new(&python)
        .args(["-m", "berth"])
        .args(args)
        .status()
        .with_context(|| format!("running {python} -m berth"))?;
    // The SDK printed its own error; pass its verdict on.
    std::process::exit(status.code().unwrap_or(1));
}
