//! An OCI runtime in front of another that adds environment variables to the process of
//! every container it creates. A builder that runs its own containers (buildah, for a
//! Dockerfile's `RUN` steps) uses it as its runtime, so the steps see berth's build
//! variables (where the host CA bundle is) without them entering the image's config.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum EnvWrapperError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not an OCI runtime spec: {detail}")]
    BadSpec { path: PathBuf, detail: String },
}

/// The bundle directory of a `create` or `run` call (`--bundle DIR`, `-b DIR`, or the
/// working directory when neither is given); `None` for every other runtime verb.
fn bundle_of(args: &[String]) -> Option<PathBuf> {
    let verb = args.iter().position(|a| a == "create" || a == "run")?;
    let rest = &args[verb + 1..];
    for (i, arg) in rest.iter().enumerate() {
        if let Some(dir) = arg.strip_prefix("--bundle=") {
            return Some(dir.into());
        }
        if arg == "--bundle" || arg == "-b" {
            return rest.get(i + 1).map(PathBuf::from);
        }
    }
    Some(".".into())
}

/// Adds each `NAME=VALUE` of `env` to the bundle's process environment, unless the
/// process sets NAME itself (a Dockerfile's own `ENV` or `ARG` wins).
fn add_env(bundle: &Path, env: &[String]) -> Result<(), EnvWrapperError> {
    let path = bundle.join("config.json");
    let io = |source| EnvWrapperError::Io {
        path: path.clone(),
        source,
    };
    let text = std::fs::read_to_string(&path).map_err(io)?;
    let mut spec: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| EnvWrapperError::BadSpec {
            path: path.clone(),
            detail: e.to_string(),
        })?;
    let Some(list) = spec["process"]["env"].as_array_mut() else {
        return Err(EnvWrapperError::BadSpec {
            path,
            detail: "no process.env list".into(),
        });
    };
    for entry in env {
        let name = entry.split('=').next().unwrap_or_default();
        let set = list.iter().any(|e| {
            e.as_str()
                .is_some_and(|e| e.split('=').next() == Some(name))
        });
        if !set {
            list.push(serde_json::Value::String(entry.clone()));
        }
    }
    let text = serde_json::to_vec(&spec).map_err(|e| EnvWrapperError::BadSpec {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    std::fs::write(&path, text).map_err(io)
}

/// Runs `runtime` with `args`, having added the variables listed in `env_file` (one
/// `NAME=VALUE` a line) to the container a `create` or `run` makes. Returns only on error.
pub fn run(runtime: &Path, env_file: &Path, args: &[String]) -> EnvWrapperError {
    if let Some(bundle) = bundle_of(args) {
        let env = match std::fs::read_to_string(env_file) {
            Ok(text) => text
                .lines()
                .filter(|l| l.contains('='))
                .map(str::to_string)
                .collect::<Vec<_>>(),
            Err(source) => {
                return EnvWrapperError::Io {
                    path: env_file.to_path_buf(),
                    source,
                }
            }
        };
        if let Err(e) = add_env(&bundle, &env) {
            return e;
        }
    }
    let source = std::process::Command::new(runtime).args(args).exec();
    EnvWrapperError::Io {
        path: runtime.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_bundle_is_found_for_create_and_run_only() {
        assert_eq!(
            bundle_of(&args(&[
                "create",
                "--bundle",
                "/b",
                "--pid-file",
                "/p",
                "id"
            ])),
            Some("/b".into())
        );
        assert_eq!(
            bundle_of(&args(&["--log", "x", "run", "-b", "/c", "id"])),
            Some("/c".into())
        );
        assert_eq!(bundle_of(&args(&["create", "id"])), Some(".".into()));
        assert_eq!(bundle_of(&args(&["start", "id"])), None);
        assert_eq!(bundle_of(&args(&["delete", "id"])), None);
    }

    #[test]
    fn variables_are_added_unless_the_process_sets_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = serde_json::json!({"ociVersion": "1.0.2", "process": {"env": ["PATH=/bin", "PIP_CERT=/mine"]}});
        std::fs::write(dir.path().join("config.json"), spec.to_string()).expect("write");
        add_env(
            dir.path(),
            &args(&["SSL_CERT_FILE=/dev/ca.crt", "PIP_CERT=/dev/ca.crt"]),
        )
        .expect("adds");
        let spec: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("config.json")).expect("read"),
        )
        .expect("json");
        assert_eq!(
            spec["process"]["env"],
            serde_json::json!(["PATH=/bin", "PIP_CERT=/mine", "SSL_CERT_FILE=/dev/ca.crt"])
        );
        assert_eq!(spec["ociVersion"], "1.0.2", "the rest is kept");
    }
}
