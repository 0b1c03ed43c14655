//! Images described in code (`Image(base_image=..., python_packages=[...], commands=[...])`)
//! and the events of building them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a pod runs: a registry reference, or an image berth builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(untagged)]
// A request-sized wire type, made once per request: a box would only cost an allocation.
#[allow(clippy::large_enum_variant)]
pub enum ImageSource {
    /// `busybox`, `jupyter/base-notebook:latest`, `127.0.0.1:5000/app@sha256:...`.
    Reference(String),
    Spec(ImageSpec),
}

/// By hand rather than untagged, so a bad spec gets the spec's own error ("unknown field
/// `bogus`") instead of "did not match any variant".
impl<'de> Deserialize<'de> for ImageSource {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(reference) => Ok(ImageSource::Reference(reference)),
            spec @ serde_json::Value::Object(_) => ImageSpec::deserialize(spec)
                .map(ImageSource::Spec)
                .map_err(|e| D::Error::custom(format!("image spec: {e}"))),
            other => Err(D::Error::custom(format!(
                "image must be a reference (a string) or an image spec (an object), not {other}"
            ))),
        }
    }
}

impl Default for ImageSource {
    fn default() -> Self {
        ImageSource::Reference(String::new())
    }
}

impl From<&str> for ImageSource {
    fn from(s: &str) -> Self {
        ImageSource::Reference(s.to_string())
    }
}

/// An image built on the server: from a base and ordered steps, every step cached; or from
/// a Dockerfile (`dockerfile`, with `context` and `build_args`), which then stands alone.
///
/// The steps run in this order: `env_vars`, `conda_packages`, `python_packages`, `commands`,
/// then `steps` as listed (the SDK's chained `with_envs`, `add_micromamba_packages`,
/// `add_python_packages`, `add_commands` calls, in the order they were made).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Any registry reference; none means berth's default base (Debian bookworm with python3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image: Option<String>,
    /// Like "python3.11"; the base's `python3` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_version: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub python_packages: Vec<String>,
    /// Conda match specs ("numpy", "gdal >=3.8"), solved and installed into `/opt/conda`
    /// (its `bin` first on the image's PATH) without any conda binary in the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conda_packages: Vec<String>,
    /// Channels for `conda_packages`, by priority: names ("conda-forge"), `https://` or
    /// `file://` URLs; conda-forge when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conda_channels: Vec<String>,
    /// Shell lines, each run with `sh -c`, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_vars: BTreeMap<String, String>,
    /// The working directory of the built image (and of later steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<BuildStep>,
    /// A Dockerfile's text, built by a real builder (buildah) on the server: multi-stage,
    /// `ARG`, `COPY --from`, `RUN --mount=type=cache`, `USER`, `EXPOSE`, `CMD`. None of the
    /// fields above may be set with it: the Dockerfile says everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    /// The Dockerfile's build context: the digest (`sha256:...`) of an archive uploaded with
    /// `PUT /v1/code/{digest}`, as `COPY` and `ADD` see it; an empty context when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// `--build-arg` values for the Dockerfile's `ARG`s.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub build_args: BTreeMap<String, String>,
}

/// One chained builder call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum BuildStep {
    Commands {
        commands: Vec<String>,
    },
    PythonPackages {
        packages: Vec<String>,
    },
    EnvVars {
        env: BTreeMap<String, String>,
    },
    /// Conda packages from `channels` (conda-forge when empty), like `conda_packages`.
    CondaPackages {
        packages: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        channels: Vec<String>,
    },
}

/// One line of the `POST /v1/images/build` stream (newline-delimited JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BuildEvent {
    /// A line of the build log: `=> Building image`, a step's output, `=> Using cached image`.
    Log(String),
    /// The build finished: the image id a pod can run.
    Done { image: String, cached: bool },
    /// The build failed; nothing was cached for the failed step.
    Error(String),
}

/// An image in the server's store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImageSummary {
    /// The reference it was pulled as, or `berth-build/<key>` for a built image.
    pub reference: String,
    pub digest: String,
    pub layers: usize,
    pub size_bytes: u64,
    pub built: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImageList {
    pub images: Vec<ImageSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PruneResult {
    pub removed_images: Vec<String>,
    pub removed_layers: usize,
    pub freed_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_is_a_reference_or_a_spec_with_clear_errors() {
        let r: ImageSource = serde_json::from_str("\"busybox\"").expect("reference");
        assert_eq!(r, ImageSource::Reference("busybox".into()));
        let s: ImageSource = serde_json::from_str(r#"{"commands": ["true"]}"#).expect("spec");
        assert!(matches!(s, ImageSource::Spec(spec) if spec.commands == ["true"]));
        let err =
            serde_json::from_str::<ImageSource>(r#"{"bogus": 1}"#).expect_err("unknown field");
        assert!(err.to_string().contains("unknown field `bogus`"), "{err}");
        let err = serde_json::from_str::<ImageSource>("5").expect_err("number");
        assert!(err.to_string().contains("reference (a string)"), "{err}");
        assert_eq!(serde_json::to_string(&r).expect("json"), "\"busybox\"");
    }
}
