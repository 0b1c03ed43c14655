//! The user docs' examples run as written: every `sh` block of docs/images.md.

use std::path::Path;
use std::process::Command;

use crate::common::client::created_id;
use crate::common::harness::Env;
use crate::common::{indent, Res};
use crate::ensure;

pub fn images_page_examples(env: &Env) -> Res<()> {
    let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/images.md");
    let text = std::fs::read_to_string(&page).map_err(|e| format!("{}: {e}", page.display()))?;
    let commands = sh_commands(&text);
    ensure!(
        commands.len() >= 3,
        "docs/images.md has {} runnable examples",
        commands.len()
    );
    let bin_dir = env.api.bin_dir();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for command in commands {
        let out = Command::new("sh")
            .arg("-c")
            .arg(&command)
            .env("PATH", &path)
            .env("BERTH_GATEWAY", &env.api.base)
            .env("BERTH_TOKEN", &env.api.token)
            .output()
            .map_err(|e| format!("running {command:?}: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        // Pods an example starts are stopped like any other test's.
        let _pod = created_id(&stdout)
            .map(|id| env.api.adopt(&id))
            .transpose()?;
        ensure!(
            out.status.success(),
            "the documented command failed: {command}\n{}\n{}",
            indent(&stdout),
            indent(&String::from_utf8_lossy(&out.stderr))
        );
    }
    Ok(())
}

/// The commands of every ```sh block, with backslash continuations joined.
fn sh_commands(markdown: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_sh = false;
    let mut current = String::new();
    for line in markdown.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_sh = !in_sh && trimmed == "```sh";
            continue;
        }
        if !in_sh || trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                commands.push(std::mem::take(&mut current));
            }
        }
    }
    commands
}
