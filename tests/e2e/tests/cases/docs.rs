//! The user docs' examples run as written: every `sh` block of docs/images.md, and each
//! use-case page (files from its ```python FILE blocks, then its `sh` blocks, checked against
//! its `<!-- expect: TEXT -->` lines).

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

/// A use-case page as the test runs it.
struct UseCase {
    files: Vec<(String, String)>,
    commands: Vec<String>,
    expects: Vec<String>,
}

fn use_case(markdown: &str) -> UseCase {
    let mut files = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in markdown.lines() {
        if let Some((name, text)) = current.as_mut() {
            if line.trim() == "```" {
                files.push((std::mem::take(name), std::mem::take(text)));
                current = None;
            } else {
                text.push_str(line);
                text.push('\n');
            }
        } else if let Some(name) = line.trim().strip_prefix("```python ") {
            current = Some((name.trim().to_string(), String::new()));
        }
    }
    let expects = markdown
        .lines()
        .filter_map(|l| l.trim().strip_prefix("<!-- expect: "))
        .filter_map(|l| l.strip_suffix(" -->"))
        .map(str::to_string)
        .collect();
    UseCase {
        files,
        commands: sh_commands(markdown),
        expects,
    }
}

/// Runs docs/<page>: writes its files into a fresh directory, runs its commands there, and
/// checks the output; then stops the pods, deployments and volumes it made.
fn run_use_case(env: &Env, page: &str) -> Res<()> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(page);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let case = use_case(&text);
    ensure!(
        !case.files.is_empty() && !case.commands.is_empty() && !case.expects.is_empty(),
        "docs/{page} has no runnable example"
    );
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    for (name, body) in &case.files {
        std::fs::write(dir.path().join(name), body).map_err(|e| format!("{name}: {e}"))?;
    }
    let mut output = String::new();
    let mut pods = Vec::new();
    let mut deployments = Vec::new();
    let mut result = Ok(());
    for command in &case.commands {
        let out = env.api.sh_in(dir.path(), command)?;
        output.push_str(&out.combined());
        if let Some(id) = created_id(&out.stdout) {
            pods.push(env.api.adopt(&id)?);
        }
        deployments.extend(out.stdout.lines().filter_map(|l| {
            l.strip_prefix("=> Deployed ")
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_string)
        }));
        if !out.status.success() {
            result = Err(format!("docs/{page}: `{command}` failed:\n{}", out.show()));
            break;
        }
    }
    if result.is_ok() {
        if let Some(missing) = case.expects.iter().find(|e| !output.contains(e.as_str())) {
            result = Err(format!(
                "docs/{page}: the output lacks {missing:?}:\n{}",
                indent(&output)
            ));
        }
    }
    for name in &deployments {
        drop(super::guide::DeploymentGuard { env, name });
    }
    drop(pods);
    for (_, body) in &case.files {
        for volume in body.split("Volume(name=\"").skip(1) {
            if let Some(name) = volume.split('"').next() {
                let _ = env.api.cli(&["volume", "delete", name]);
            }
        }
    }
    result
}

pub fn notebook_page(env: &Env) -> Res<()> {
    super::guide::notebook_image(env)?;
    run_use_case(env, "notebook.md")
}

pub fn streamlit_page(env: &Env) -> Res<()> {
    run_use_case(env, "streamlit.md")
}

pub fn ci_page(env: &Env) -> Res<()> {
    run_use_case(env, "ci.md")
}

pub fn llm_code_page(env: &Env) -> Res<()> {
    run_use_case(env, "llm-code.md")
}
