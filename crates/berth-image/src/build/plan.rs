//! Turning an [`ImageSpec`] into an ordered, validated list of steps.

use std::collections::BTreeMap;

use berth_api::{BuildStep, ImageSpec};
use serde::Serialize;

use super::dockerfile::DockerfileBuild;

const MAX_STEPS: usize = 256;
const MAX_STEP_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("{field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
}

fn invalid(field: &'static str, problem: impl Into<String>) -> PlanError {
    PlanError::Invalid {
        field,
        problem: problem.into(),
    }
}

/// One step of a build, in the order it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Step {
    /// A shell line, run with `sh -c`.
    Run { command: String },
    /// `pip install` into the image's python.
    Pip { packages: Vec<String> },
    /// Environment for later steps and for the image.
    Env { vars: BTreeMap<String, String> },
    /// Conda packages into `/opt/conda`. `lock` is the solve's exact package list, filled in
    /// before the build (see [`BuildPlan::conda_steps`]), so the step's key changes when
    /// the channels offer other packages for the same specs.
    Conda {
        packages: Vec<String>,
        channels: Vec<String>,
        lock: Vec<String>,
    },
}

impl Step {
    /// Env steps change no files, so they make no layer (they still change later keys).
    pub fn makes_layer(&self) -> bool {
        !matches!(self, Step::Env { .. })
    }

    pub fn describe(&self) -> String {
        match self {
            Step::Run { command } => format!("RUN {command}"),
            Step::Pip { packages } => format!("PIP INSTALL {}", packages.join(" ")),
            Step::Conda { packages, .. } => format!("CONDA INSTALL {}", packages.join(" ")),
            Step::Env { vars } => {
                let names: Vec<&str> = vars.keys().map(String::as_str).collect();
                format!("ENV {}", names.join(" "))
            }
        }
    }
}

/// A validated build: what to start from and what to do, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildPlan {
    /// A registry reference; `None` for the default base.
    pub base_image: Option<String>,
    /// The interpreter steps and packages use, like "python3.11"; "python3" by default.
    pub python: String,
    pub steps: Vec<Step>,
    pub workdir: Option<String>,
    /// A Dockerfile build instead of base and steps (which are then empty).
    pub dockerfile: Option<DockerfileBuild>,
}

impl BuildPlan {
    pub fn from_spec(spec: &ImageSpec) -> Result<Self, PlanError> {
        if let Some(dockerfile) = DockerfileBuild::from_spec(spec)? {
            return Ok(BuildPlan {
                base_image: None,
                python: "python3".into(),
                steps: Vec::new(),
                workdir: None,
                dockerfile: Some(dockerfile),
            });
        }
        if let Some(base) = &spec.base_image {
            crate::parse_reference(base).map_err(|e| invalid("base_image", e.to_string()))?;
        }
        let python = match &spec.python_version {
            None => "python3".to_string(),
            Some(v) if valid_python(v) => v.clone(),
            Some(v) => {
                return Err(invalid(
                    "python_version",
                    format!("{v:?} is not a python version like \"python3.11\""),
                ))
            }
        };
        let mut steps = Vec::new();
        if !spec.env_vars.is_empty() {
            steps.push(env_step(&spec.env_vars, "env_vars")?);
        }
        if !spec.conda_packages.is_empty() {
            steps.push(conda_step(
                &spec.conda_packages,
                &spec.conda_channels,
                "conda_packages",
            )?);
        } else if !spec.conda_channels.is_empty() {
            return Err(invalid(
                "conda_channels",
                "channels without conda_packages to take from them",
            ));
        }
        if !spec.python_packages.is_empty() {
            steps.push(pip_step(&spec.python_packages, "python_packages")?);
        }
        for command in &spec.commands {
            steps.push(run_step(command, "commands")?);
        }
        for step in &spec.steps {
            match step {
                BuildStep::Commands { commands } => {
                    for command in commands {
                        steps.push(run_step(command, "steps")?);
                    }
                }
                BuildStep::PythonPackages { packages } => steps.push(pip_step(packages, "steps")?),
                BuildStep::EnvVars { env } => steps.push(env_step(env, "steps")?),
                BuildStep::CondaPackages { packages, channels } => {
                    steps.push(conda_step(packages, channels, "steps")?)
                }
            }
        }
        if steps.len() > MAX_STEPS {
            return Err(invalid("steps", format!("more than {MAX_STEPS} steps")));
        }
        let workdir = match &spec.workdir {
            None => None,
            Some(w)
                if w.starts_with('/') && !w.contains('\0') && !w.split('/').any(|p| p == "..") =>
            {
                Some(w.clone())
            }
            Some(w) => return Err(invalid("workdir", format!("{w:?} is not an absolute path"))),
        };
        Ok(BuildPlan {
            base_image: spec.base_image.clone(),
            python,
            steps,
            workdir,
            dockerfile: None,
        })
    }

    /// The conda steps, for their solves to be filled in before the build.
    pub fn conda_steps(&mut self) -> impl Iterator<Item = &mut Step> {
        self.steps
            .iter_mut()
            .filter(|s| matches!(s, Step::Conda { .. }))
    }

    /// The shell line a step runs, if it runs one.
    pub fn command_of(&self, step: &Step) -> Option<String> {
        match step {
            Step::Run { command } => Some(command.clone()),
            Step::Pip { packages } => {
                let quoted: Vec<String> = packages.iter().map(|p| shell_quote(p)).collect();
                // PEP 668: Debian marks its python "externally managed"; berth installs into it
                // anyway (PIP_BREAK_SYSTEM_PACKAGES, which older pips ignore), so the packages
                // land in the image's own python without a venv to activate.
                // Options go as environment, which pips too old to know them ignore.
                Some(format!(
                    "PIP_BREAK_SYSTEM_PACKAGES=1 PIP_ROOT_USER_ACTION=ignore PIP_NO_CACHE_DIR=1 \
                     PIP_DISABLE_PIP_VERSION_CHECK=1 {} -m pip install {}",
                    self.python,
                    quoted.join(" ")
                ))
            }
            Step::Env { .. } | Step::Conda { .. } => None,
        }
    }
}

fn valid_python(v: &str) -> bool {
    let Some(rest) = v.strip_prefix("python3") else {
        return false;
    };
    rest.is_empty()
        || rest.strip_prefix('.').is_some_and(|minor| {
            !minor.is_empty() && minor.len() <= 3 && minor.bytes().all(|b| b.is_ascii_digit())
        })
}

fn run_step(command: &str, field: &'static str) -> Result<Step, PlanError> {
    if command.trim().is_empty() {
        return Err(invalid(field, "a command is empty"));
    }
    if command.len() > MAX_STEP_BYTES || command.contains('\0') {
        return Err(invalid(
            field,
            "a command is too long or contains a NUL byte",
        ));
    }
    Ok(Step::Run {
        command: command.to_string(),
    })
}

fn pip_step(packages: &[String], field: &'static str) -> Result<Step, PlanError> {
    let mut clean = Vec::with_capacity(packages.len());
    for p in packages {
        let p = p.trim();
        // Options would change what pip does (`--index-url`, `-r /etc/shadow`); only
        // requirement specifiers are accepted.
        if p.is_empty() || p.starts_with('-') || p.contains(char::is_whitespace) || p.contains('\0')
        {
            return Err(invalid(
                field,
                format!("{p:?} is not a package requirement (like \"six\" or \"numpy==2.1\")"),
            ));
        }
        clean.push(p.to_string());
    }
    if clean.is_empty() {
        return Err(invalid(field, "the package list is empty"));
    }
    Ok(Step::Pip { packages: clean })
}

/// At most this many conda specs or channels in one step.
const MAX_CONDA_ITEMS: usize = 256;

fn conda_step(
    packages: &[String],
    channels: &[String],
    field: &'static str,
) -> Result<Step, PlanError> {
    if packages.is_empty() {
        return Err(invalid(field, "the conda package list is empty"));
    }
    if packages.len() > MAX_CONDA_ITEMS || channels.len() > MAX_CONDA_ITEMS {
        return Err(invalid(
            field,
            format!("more than {MAX_CONDA_ITEMS} conda packages or channels"),
        ));
    }
    for package in packages {
        berth_conda::check_spec(package).map_err(|e| invalid(field, e.to_string()))?;
    }
    for channel in channels {
        berth_conda::check_channel(channel).map_err(|e| invalid(field, e.to_string()))?;
    }
    Ok(Step::Conda {
        packages: packages.iter().map(|p| p.trim().to_string()).collect(),
        channels: channels.to_vec(),
        lock: Vec::new(),
    })
}

fn env_step(vars: &BTreeMap<String, String>, field: &'static str) -> Result<Step, PlanError> {
    for (name, value) in vars {
        let mut bytes = name.bytes();
        let ok = matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
            && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok {
            return Err(invalid(
                field,
                format!("{name:?} is not a valid variable name"),
            ));
        }
        if value.contains('\0') {
            return Err(invalid(
                field,
                format!("the value of {name} contains a NUL byte"),
            ));
        }
    }
    Ok(Step::Env { vars: vars.clone() })
}

/// Single-quotes a word for `sh`.
pub(crate) fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ImageSpec {
        ImageSpec {
            python_packages: vec!["six".into()],
            commands: vec!["echo hi > /hello".into(), "true".into()],
            env_vars: [("A".to_string(), "1".to_string())].into_iter().collect(),
            steps: vec![BuildStep::Commands {
                commands: vec!["echo later".into()],
            }],
            ..ImageSpec::default()
        }
    }

    #[test]
    fn steps_keep_their_order() {
        let plan = BuildPlan::from_spec(&spec()).expect("valid");
        let kinds: Vec<String> = plan.steps.iter().map(Step::describe).collect();
        assert_eq!(
            kinds,
            [
                "ENV A",
                "PIP INSTALL six",
                "RUN echo hi > /hello",
                "RUN true",
                "RUN echo later"
            ]
        );
        assert_eq!(plan.python, "python3");
        assert!(plan
            .command_of(&plan.steps[1])
            .expect("pip")
            .contains("python3 -m pip install"));
    }

    #[test]
    fn bad_fields_are_named() {
        let field = |s: ImageSpec| match BuildPlan::from_spec(&s) {
            Err(PlanError::Invalid { field, .. }) => field,
            Ok(_) => "valid",
        };
        assert_eq!(
            field(ImageSpec {
                python_version: Some("ruby3".into()),
                ..spec()
            }),
            "python_version"
        );
        assert_eq!(
            field(ImageSpec {
                python_packages: vec!["--index-url=x".into()],
                ..spec()
            }),
            "python_packages"
        );
        assert_eq!(
            field(ImageSpec {
                commands: vec!["  ".into()],
                ..spec()
            }),
            "commands"
        );
        assert_eq!(
            field(ImageSpec {
                workdir: Some("rel".into()),
                ..spec()
            }),
            "workdir"
        );
        assert_eq!(
            field(ImageSpec {
                base_image: Some("Bad Ref".into()),
                ..spec()
            }),
            "base_image"
        );
        assert_eq!(
            field(ImageSpec {
                python_version: Some("python3.12".into()),
                ..spec()
            }),
            "valid"
        );
    }

    #[test]
    fn conda_packages_come_before_pip_and_are_checked() {
        let plan = BuildPlan::from_spec(&ImageSpec {
            conda_packages: vec!["gdal >=3.8".into()],
            conda_channels: vec!["file:///srv/channel".into()],
            ..spec()
        })
        .expect("valid");
        assert_eq!(plan.steps[1].describe(), "CONDA INSTALL gdal >=3.8");
        assert_eq!(plan.steps[2].describe(), "PIP INSTALL six");
        let field = |s: ImageSpec| match BuildPlan::from_spec(&s) {
            Err(PlanError::Invalid { field, problem }) => format!("{field}: {problem}"),
            Ok(_) => "valid".into(),
        };
        assert!(field(ImageSpec {
            conda_packages: vec!["nump*".into()],
            ..spec()
        })
        .starts_with("conda_packages: conda package \"nump*\""));
        assert!(field(ImageSpec {
            conda_packages: vec!["numpy".into()],
            conda_channels: vec!["http://plain.example".into()],
            ..spec()
        })
        .contains("only https:// and file://"));
        assert!(field(ImageSpec {
            conda_channels: vec!["conda-forge".into()],
            ..spec()
        })
        .starts_with("conda_channels:"));
    }

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(shell_quote("a'b"), "'a'\\''b'");
    }
}
