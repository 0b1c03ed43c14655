//! Images from a Dockerfile: the checks on what a client sends, and the cache key. The
//! build itself is a real builder's (the node runs buildah); its result comes back through
//! [`crate::ContentStore::import_oci_layout`].

use std::collections::BTreeMap;

use berth_api::ImageSpec;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::plan::PlanError;

/// Larger than any hand-written Dockerfile, small beside the API's 1 MiB body.
const MAX_DOCKERFILE_BYTES: usize = 256 * 1024;
const MAX_BUILD_ARGS: usize = 256;

/// A validated Dockerfile build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DockerfileBuild {
    pub text: String,
    /// `sha256:<hex>` of an uploaded archive; `None` is an empty context.
    pub context: Option<String>,
    pub build_args: BTreeMap<String, String>,
}

impl DockerfileBuild {
    /// Checks the Dockerfile fields of `spec`; `None` when it has no Dockerfile. The other
    /// build fields must be empty: a Dockerfile says everything itself.
    pub fn from_spec(spec: &ImageSpec) -> Result<Option<Self>, PlanError> {
        let Some(text) = &spec.dockerfile else {
            if spec.context.is_some() {
                return Err(invalid(
                    "context",
                    "a context without a dockerfile to use it",
                ));
            }
            if !spec.build_args.is_empty() {
                return Err(invalid("build_args", "build args without a dockerfile"));
            }
            return Ok(None);
        };
        let others = [
            ("base_image", spec.base_image.is_some()),
            ("python_version", spec.python_version.is_some()),
            ("python_packages", !spec.python_packages.is_empty()),
            ("conda_packages", !spec.conda_packages.is_empty()),
            ("conda_channels", !spec.conda_channels.is_empty()),
            ("commands", !spec.commands.is_empty()),
            ("env_vars", !spec.env_vars.is_empty()),
            ("workdir", spec.workdir.is_some()),
            ("steps", !spec.steps.is_empty()),
        ];
        if let Some((field, _)) = others.iter().find(|(_, set)| *set) {
            return Err(invalid(
                field,
                "cannot be combined with a dockerfile (say it in the Dockerfile)",
            ));
        }
        if text.trim().is_empty() {
            return Err(invalid("dockerfile", "the Dockerfile is empty"));
        }
        if text.len() > MAX_DOCKERFILE_BYTES || text.contains('\0') {
            return Err(invalid(
                "dockerfile",
                format!(
                    "the Dockerfile is over {} KiB or contains a NUL byte",
                    MAX_DOCKERFILE_BYTES / 1024
                ),
            ));
        }
        if let Some(context) = &spec.context {
            if !is_sha256_digest(context) {
                return Err(invalid(
                    "context",
                    format!("{context:?} is not the digest (sha256:<64 hex>) of an upload"),
                ));
            }
        }
        if spec.build_args.len() > MAX_BUILD_ARGS {
            return Err(invalid(
                "build_args",
                format!("more than {MAX_BUILD_ARGS} build args"),
            ));
        }
        for (name, value) in &spec.build_args {
            if !is_arg_name(name) {
                return Err(invalid(
                    "build_args",
                    format!("{name:?} is not a valid ARG name"),
                ));
            }
            if value.contains('\0') {
                return Err(invalid(
                    "build_args",
                    format!("the value of {name} contains a NUL byte"),
                ));
            }
        }
        Ok(Some(DockerfileBuild {
            text: text.clone(),
            context: spec.context.clone(),
            build_args: spec.build_args.clone(),
        }))
    }

    /// The cache key: the Dockerfile, the context's digest and the build args. The same
    /// three give the stored image without running the builder.
    pub fn key(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"berth-dockerfile-v1\0");
        h.update(serde_json::to_vec(self).unwrap_or_default());
        hex::encode(h.finalize())
    }

    /// The name the built image is recorded under.
    pub fn reference(&self) -> String {
        format!("berth-build/{}", &self.key()[..32])
    }
}

fn invalid(field: &'static str, problem: impl Into<String>) -> PlanError {
    PlanError::Invalid {
        field,
        problem: problem.into(),
    }
}

fn is_sha256_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// ARG names as buildah takes them on the command line: no `=`, no whitespace.
fn is_arg_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> ImageSpec {
        ImageSpec {
            dockerfile: Some(text.into()),
            context: Some(format!("sha256:{}", "a".repeat(64))),
            build_args: [("V".to_string(), "1".to_string())].into(),
            ..ImageSpec::default()
        }
    }

    fn problem(s: ImageSpec) -> String {
        match DockerfileBuild::from_spec(&s) {
            Err(PlanError::Invalid { field, problem }) => format!("{field}: {problem}"),
            Ok(_) => "valid".into(),
        }
    }

    #[test]
    fn a_dockerfile_stands_alone() {
        assert_eq!(problem(spec("FROM busybox\n")), "valid");
        assert!(problem(ImageSpec {
            commands: vec!["true".into()],
            ..spec("FROM busybox")
        })
        .starts_with("commands: cannot be combined with a dockerfile"));
        assert!(problem(ImageSpec {
            base_image: Some("busybox".into()),
            ..spec("FROM busybox")
        })
        .starts_with("base_image:"));
    }

    #[test]
    fn bad_fields_are_named() {
        assert!(problem(spec("  \n")).starts_with("dockerfile: the Dockerfile is empty"));
        assert!(problem(spec("FROM a\0")).starts_with("dockerfile:"));
        assert!(problem(ImageSpec {
            context: Some("../../etc".into()),
            ..spec("FROM busybox")
        })
        .starts_with("context: \"../../etc\" is not the digest"));
        assert!(problem(ImageSpec {
            build_args: [("A=B".to_string(), "1".to_string())].into(),
            ..spec("FROM busybox")
        })
        .starts_with("build_args: \"A=B\""));
        assert!(problem(ImageSpec {
            context: Some(format!("sha256:{}", "a".repeat(64))),
            ..ImageSpec::default()
        })
        .starts_with("context: a context without a dockerfile"));
    }

    #[test]
    fn the_key_follows_text_context_and_args() {
        let key = |s: ImageSpec| {
            DockerfileBuild::from_spec(&s)
                .expect("valid")
                .expect("a dockerfile")
                .key()
        };
        let base = key(spec("FROM busybox"));
        assert_eq!(base, key(spec("FROM busybox")));
        assert_ne!(base, key(spec("FROM busybox\nRUN true")));
        assert_ne!(
            base,
            key(ImageSpec {
                context: Some(format!("sha256:{}", "b".repeat(64))),
                ..spec("FROM busybox")
            })
        );
        assert_ne!(
            base,
            key(ImageSpec {
                build_args: [("V".to_string(), "2".to_string())].into(),
                ..spec("FROM busybox")
            })
        );
    }
}
