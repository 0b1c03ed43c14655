//! Validating a create request at the API edge into a pod spec, and naming its stub.

use std::collections::BTreeMap;

use berth_api::{
    parse_cpu_millis, parse_disk_mib, parse_memory_mib, ApiError, CreateContainerRequest,
    ImageSource, ImageSpec, VolumeMount, CODE_MOUNT_PATH, MAX_KEEP_WARM_SECONDS,
};
use berth_image::build::{BuildPlan, PlanError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const DEFAULT_CPU_MILLIS: u64 = 1000;
pub const DEFAULT_MEMORY_MIB: u64 = 1024;
const MAX_ENV_VARS: usize = 1000;
const MAX_ENV_BYTES: usize = 128 * 1024;
const MAX_ARGS: usize = 4096;
const MAX_ARG_BYTES: usize = 128 * 1024;
const MAX_VOLUMES: usize = 16;
const MAX_SECRETS: usize = 64;
const MAX_PATH_BYTES: usize = 4096;
/// Paths a volume may not cover: the kernel's and berth's own.
const RESERVED_MOUNTS: [&str; 4] = ["/proc", "/sys", "/dev", CODE_MOUNT_PATH];

/// A pod spec that passed validation; what a stub stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodSpec {
    pub image: ImageSource,
    pub ports: Vec<u16>,
    pub cpu_millis: u64,
    pub memory_mib: u64,
    pub env: BTreeMap<String, String>,
    pub entrypoint: Option<Vec<String>>,
    pub keep_warm_seconds: i64,
    // The fields below are left out when empty, so older stubs keep their ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeMount>,
    /// Secret names only: values are read at each start and never stored with the stub.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// `sha256:<hex>` of the uploaded working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// Its URLs need a token (the API token, or one scoped to a port).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub authorized: bool,
    /// `runc` or `gvisor`; the server's default when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub block_network: bool,
    /// In canonical form (serialized as `10.0.0.0/8`, so stub ids read as before).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_list: Vec<ipnet::IpNet>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only_rootfs: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub privileged_user: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_mib: Option<u64>,
    /// An init as PID 1 (the default, so only `false` is written).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub init: bool,
    /// A canonical signal name like `SIGINT`; the image's STOPSIGNAL when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_seconds: Option<u64>,
}

fn yes() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

/// More CIDRs than this in an allow list is refused (each becomes a firewall rule).
const MAX_ALLOW_LIST: usize = 64;

impl PodSpec {
    /// Checks every field, naming the field and the problem on the first bad one.
    pub fn validate(req: CreateContainerRequest) -> Result<Self, ApiError> {
        let image = match req.image {
            ImageSource::Reference(reference) => {
                berth_image::parse_reference(&reference)
                    .map_err(|e| ApiError::invalid("image", e))?;
                ImageSource::Reference(reference.trim().to_string())
            }
            ImageSource::Spec(spec) => {
                validate_image_spec(&spec)?;
                ImageSource::Spec(spec)
            }
        };

        let mut ports = Vec::with_capacity(req.ports.len());
        for port in &req.ports {
            let p = u16::try_from(*port)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| ApiError::invalid("ports", format!("{port} is outside 1-65535")))?;
            if ports.contains(&p) {
                return Err(ApiError::invalid("ports", format!("{p} is listed twice")));
            }
            ports.push(p);
        }

        let cpu_millis = match &req.cpu {
            Some(v) => parse_cpu_millis(v).map_err(|e| ApiError::invalid("cpu", e))?,
            None => DEFAULT_CPU_MILLIS,
        };
        let disk_mib = req
            .disk
            .as_ref()
            .map(|v| parse_disk_mib(v).map_err(|e| ApiError::invalid("disk", e)))
            .transpose()?;
        let memory_mib = match &req.memory {
            Some(v) => parse_memory_mib(v).map_err(|e| ApiError::invalid("memory", e))?,
            None => DEFAULT_MEMORY_MIB,
        };

        if req.env.len() > MAX_ENV_VARS {
            return Err(ApiError::invalid(
                "env",
                format!("more than {MAX_ENV_VARS} variables"),
            ));
        }
        let mut env_bytes = 0;
        for (name, value) in &req.env {
            if !valid_env_name(name) {
                return Err(ApiError::invalid(
                    "env",
                    format!("{name:?} is not a valid variable name (letters, digits and '_', not starting with a digit)"),
                ));
            }
            if value.contains('\0') {
                return Err(ApiError::invalid(
                    "env",
                    format!("the value of {name} contains a NUL byte"),
                ));
            }
            env_bytes += name.len() + value.len();
        }
        if env_bytes > MAX_ENV_BYTES {
            return Err(ApiError::invalid(
                "env",
                format!("more than {MAX_ENV_BYTES} bytes in total"),
            ));
        }

        if let Some(args) = &req.entrypoint {
            if args.is_empty() || args[0].trim().is_empty() {
                return Err(ApiError::invalid(
                    "entrypoint",
                    "is empty; leave it out to run the image's own command",
                ));
            }
            if args.len() > MAX_ARGS || args.iter().map(String::len).sum::<usize>() > MAX_ARG_BYTES
            {
                return Err(ApiError::invalid("entrypoint", "is too long"));
            }
            if args.iter().any(|a| a.contains('\0')) {
                return Err(ApiError::invalid("entrypoint", "contains a NUL byte"));
            }
        }

        let keep_warm_seconds = req
            .keep_warm_seconds
            .unwrap_or(berth_api::DEFAULT_KEEP_WARM_SECONDS);
        if !(-1..=MAX_KEEP_WARM_SECONDS).contains(&keep_warm_seconds) {
            return Err(ApiError::invalid(
                "keep_warm_seconds",
                format!("{keep_warm_seconds} is not allowed (-1 for never, or 0 to {MAX_KEEP_WARM_SECONDS} seconds)"),
            ));
        }

        if let Some(gpu) = req.gpu.as_deref().filter(|g| !g.trim().is_empty()) {
            return Err(ApiError::invalid(
                "gpu",
                format!("this server has no GPUs (asked for {gpu:?}); leave gpu unset"),
            ));
        }
        let volumes = validate_volumes(req.volumes)?;
        let secrets = validate_secrets(req.secrets, &req.env)?;
        if let Some(code) = &req.code {
            if !valid_digest(code) {
                return Err(ApiError::invalid(
                    "code",
                    format!("{code:?} is not an archive digest (sha256:<64 hex digits>)"),
                ));
            }
        }
        if let Some(dir) = &req.workdir {
            check_absolute_path(dir).map_err(|p| ApiError::invalid("workdir", p))?;
        }

        let runtime = match req.runtime.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(name) => Some(
                name.parse::<berth_runtime::RuntimeKind>()
                    .map_err(|e| ApiError::invalid("runtime", e))?
                    .as_str()
                    .to_string(),
            ),
        };
        let stop_signal = req
            .stop_signal
            .as_deref()
            .map(|text| {
                berth_api::parse_stop_signal(text)
                    .map(|signal| signal.as_str().to_string())
                    .map_err(|e| ApiError::invalid("stop_signal", e))
            })
            .transpose()?;
        if let Some(grace) = req.stop_grace_seconds {
            if grace > berth_api::MAX_STOP_GRACE_SECONDS {
                return Err(ApiError::invalid(
                    "stop_grace_seconds",
                    format!(
                        "{grace} is more than {} seconds",
                        berth_api::MAX_STOP_GRACE_SECONDS
                    ),
                ));
            }
        }
        let allow_list = validate_allow_list(&req.allow_list)?;
        if req.block_network && !allow_list.is_empty() {
            return Err(ApiError::invalid(
                "allow_list",
                "block_network cuts all egress; give one or the other",
            ));
        }

        Ok(PodSpec {
            image,
            ports,
            cpu_millis,
            memory_mib,
            env: req.env,
            entrypoint: req.entrypoint,
            keep_warm_seconds,
            volumes,
            secrets,
            code: req.code,
            workdir: req.workdir,
            authorized: req.authorized,
            runtime,
            block_network: req.block_network,
            allow_list,
            read_only_rootfs: req.read_only_rootfs,
            privileged_user: req.privileged_user,
            disk_mib,
            init: req.init.unwrap_or(true),
            stop_signal,
            stop_grace_seconds: req.stop_grace_seconds,
        })
    }

    /// What the pod may reach, for the node.
    pub fn egress(&self) -> berth_net::Egress {
        if self.block_network {
            return berth_net::Egress::Blocked;
        }
        if self.allow_list.is_empty() {
            berth_net::Egress::Open
        } else {
            berth_net::Egress::AllowList(self.allow_list.clone())
        }
    }

    /// How the image reads in listings: the reference, or what a build starts from.
    pub fn image_name(&self) -> String {
        image_name(&self.image)
    }

    /// The stub id: a content hash of the spec, formatted like a UUID.
    pub fn stub_id(&self) -> Result<String, serde_json::Error> {
        let json = serde_json::to_vec(self)?;
        let h = hex::encode(&Sha256::digest(&json)[..16]);
        Ok(format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        ))
    }
}

pub fn image_name(image: &ImageSource) -> String {
    match image {
        ImageSource::Reference(r) => r.clone(),
        ImageSource::Spec(spec) if spec.dockerfile.is_some() => "build of a Dockerfile".into(),
        ImageSource::Spec(spec) => format!(
            "build of {}",
            spec.base_image
                .as_deref()
                .unwrap_or(berth_image::build::DEFAULT_BASE_REFERENCE)
        ),
    }
}

/// The 400 for a Dockerfile build context that was never uploaded.
pub fn missing_context(digest: &str) -> ApiError {
    ApiError::invalid(
        "image.context",
        format!("{digest} was not uploaded; PUT the context archive to /v1/code/{digest} first"),
    )
}

/// Checks an image spec, naming the field as `image.<field>`.
pub fn validate_image_spec(spec: &ImageSpec) -> Result<BuildPlan, ApiError> {
    BuildPlan::from_spec(spec).map_err(|PlanError::Invalid { field, problem }| {
        ApiError::invalid(&format!("image.{field}"), problem)
    })
}

/// A volume name: what `berth volume` shows and the node's directory is called.
pub fn valid_volume_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    name.len() <= 63
        && matches!(bytes.next(), Some(b) if b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
        && !name.contains("..")
}

/// `sha256:<64 lower-case hex>`.
pub fn valid_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// An absolute, normalised path inside a container.
/// Each entry a CIDR (`10.0.0.0/8`, `2001:db8::/32`) or a bare address (one host), in
/// canonical form, without duplicates.
fn validate_allow_list(list: &[String]) -> Result<Vec<ipnet::IpNet>, ApiError> {
    if list.len() > MAX_ALLOW_LIST {
        return Err(ApiError::invalid(
            "allow_list",
            format!("at most {MAX_ALLOW_LIST} entries, got {}", list.len()),
        ));
    }
    let mut nets = Vec::with_capacity(list.len());
    for entry in list {
        let entry = entry.trim();
        let net = entry
            .parse::<ipnet::IpNet>()
            .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| {
                ApiError::invalid(
                    "allow_list",
                    format!("{entry:?} is not a CIDR such as 203.0.113.0/24 or 2001:db8::/32"),
                )
            })?
            .trunc();
        if !nets.contains(&net) {
            nets.push(net);
        }
    }
    Ok(nets)
}

fn check_absolute_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} is not an absolute path"));
    }
    if path.len() > MAX_PATH_BYTES || path.contains('\0') {
        return Err("is too long or contains a NUL byte".into());
    }
    if path
        .split('/')
        .skip(1)
        .any(|c| c == ".." || c == "." || (c.is_empty() && path != "/"))
    {
        return Err(format!(
            "{path:?} is not a plain path (no '.', '..' or '//')"
        ));
    }
    Ok(())
}

fn validate_volumes(volumes: Vec<VolumeMount>) -> Result<Vec<VolumeMount>, ApiError> {
    let bad = |p: String| ApiError::invalid("volumes", p);
    if volumes.len() > MAX_VOLUMES {
        return Err(bad(format!("more than {MAX_VOLUMES} volumes")));
    }
    let mut out: Vec<VolumeMount> = Vec::with_capacity(volumes.len());
    for v in volumes {
        if !valid_volume_name(&v.name) {
            return Err(bad(format!(
                "{:?} is not a volume name (lower-case letters, digits, '-', '_', '.', up to 63)",
                v.name
            )));
        }
        let path = v.mount_path.trim_end_matches('/').to_string();
        if path.is_empty() && v.mount_path.starts_with('/') {
            return Err(bad("a volume cannot be mounted over /".into()));
        }
        check_absolute_path(&path).map_err(|p| bad(format!("mount_path: {p}")))?;
        if let Some(r) = RESERVED_MOUNTS
            .iter()
            .find(|r| path == **r || path.starts_with(&format!("{r}/")))
        {
            return Err(bad(format!("{path:?} is under {r}, which berth reserves")));
        }
        if out.iter().any(|o| o.name == v.name || o.mount_path == path) {
            return Err(bad(format!("{:?} or {path:?} is listed twice", v.name)));
        }
        out.push(VolumeMount {
            name: v.name,
            mount_path: path,
        });
    }
    Ok(out)
}

fn validate_secrets(
    secrets: Vec<String>,
    env: &BTreeMap<String, String>,
) -> Result<Vec<String>, ApiError> {
    let bad = |p: String| ApiError::invalid("secrets", p);
    if secrets.len() > MAX_SECRETS {
        return Err(bad(format!("more than {MAX_SECRETS} secrets")));
    }
    let mut out: Vec<String> = Vec::with_capacity(secrets.len());
    for name in secrets {
        if !valid_env_name(&name) {
            return Err(bad(format!(
                "{name:?} is not a secret name (it becomes an environment variable: letters, digits and '_')"
            )));
        }
        if env.contains_key(&name) {
            return Err(bad(format!("{name} is also set in env; set it one way")));
        }
        if out.contains(&name) {
            return Err(bad(format!("{name} is listed twice")));
        }
        out.push(name);
    }
    Ok(out)
}

pub fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(v: serde_json::Value) -> CreateContainerRequest {
        serde_json::from_value(v).expect("request")
    }

    fn field_of(v: serde_json::Value) -> String {
        let err = PodSpec::validate(req(v)).expect_err("invalid");
        err.error
            .message
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn defaults_and_stub_ids() {
        let spec = PodSpec::validate(req(json!({"image": "busybox"}))).expect("valid");
        assert_eq!(spec.cpu_millis, 1000);
        assert_eq!(spec.memory_mib, 1024);
        assert_eq!(spec.keep_warm_seconds, 600);
        let same = PodSpec::validate(req(json!({"image": "busybox"}))).expect("valid");
        let id = spec.stub_id().expect("id");
        assert_eq!(id, same.stub_id().expect("id"));
        let other =
            PodSpec::validate(req(json!({"image": "busybox", "env": {"A": "1"}}))).expect("valid");
        assert_ne!(id, other.stub_id().expect("id"));
        assert_eq!(id.len(), 36);
    }

    #[test]
    fn each_bad_field_is_named() {
        assert_eq!(field_of(json!({"image": "UPPER CASE::bad"})), "image");
        assert_eq!(
            field_of(json!({"image": {"python_version": "perl5"}})),
            "image.python_version"
        );
        assert_eq!(
            field_of(json!({"image": {"commands": [""]}})),
            "image.commands"
        );
        assert_eq!(field_of(json!({"image": "a", "ports": [0]})), "ports");
        assert_eq!(field_of(json!({"image": "a", "ports": [70000]})), "ports");
        assert_eq!(field_of(json!({"image": "a", "ports": [80, 80]})), "ports");
        assert_eq!(field_of(json!({"image": "a", "cpu": "lots"})), "cpu");
        assert_eq!(field_of(json!({"image": "a", "cpu": 100})), "cpu");
        assert_eq!(field_of(json!({"image": "a", "memory": "1Qi"})), "memory");
        assert_eq!(field_of(json!({"image": "a", "env": {"1BAD": "x"}})), "env");
        assert_eq!(field_of(json!({"image": "a", "env": {"A=B": "x"}})), "env");
        assert_eq!(
            field_of(json!({"image": "a", "entrypoint": []})),
            "entrypoint"
        );
        assert_eq!(
            field_of(json!({"image": "a", "keep_warm_seconds": -5})),
            "keep_warm_seconds"
        );
        assert_eq!(
            field_of(json!({"image": "a", "keep_warm_seconds": 9223372036854775807i64})),
            "keep_warm_seconds"
        );
        assert_eq!(
            field_of(json!({"image": "a", "keep_warm_seconds": MAX_KEEP_WARM_SECONDS + 1})),
            "keep_warm_seconds"
        );
        assert_eq!(field_of(json!({"image": "a", "gpu": "A10G"})), "gpu");
        for volumes in [
            json!([{"name": "Data", "mount_path": "/data"}]),
            json!([{"name": "../x", "mount_path": "/data"}]),
            json!([{"name": "d", "mount_path": "data"}]),
            json!([{"name": "d", "mount_path": "/a/../etc"}]),
            json!([{"name": "d", "mount_path": "/"}]),
            json!([{"name": "d", "mount_path": "/proc/x"}]),
            json!([{"name": "d", "mount_path": "/mnt/code"}]),
            json!([{"name": "d", "mount_path": "/a"}, {"name": "e", "mount_path": "/a/"}]),
        ] {
            assert_eq!(
                field_of(json!({"image": "a", "volumes": volumes})),
                "volumes",
                "{volumes}"
            );
        }
        assert_eq!(
            field_of(json!({"image": "a", "secrets": ["A-B"]})),
            "secrets"
        );
        assert_eq!(
            field_of(json!({"image": "a", "secrets": ["A"], "env": {"A": "1"}})),
            "secrets"
        );
        assert_eq!(
            field_of(json!({"image": "a", "code": "sha256:xyz"})),
            "code"
        );
        assert_eq!(field_of(json!({"image": "a", "workdir": "rel"})), "workdir");
        let longest = json!({"image": "a", "keep_warm_seconds": MAX_KEEP_WARM_SECONDS});
        assert!(PodSpec::validate(req(longest)).is_ok());
    }
}
