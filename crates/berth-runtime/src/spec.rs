//! Building the OCI runtime spec of a pod from its image config and its pod spec.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxIdMappingBuilder,
    LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimit, PosixRlimitBuilder, PosixRlimitType,
    ProcessBuilder, RootBuilder, Spec, UserBuilder,
};

use crate::error::io_err;
use crate::RuntimeError;

/// The cgroup CFS period; quota = cores × period.
const CPU_PERIOD_US: u64 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceLimits {
    pub cpu_millis: u64,
    pub memory_mib: u64,
    pub pids: i64,
}

/// Everything that decides how one container runs.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub id: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub hostname: String,
    /// The pod's network namespace (a bind-mounted nsfs file).
    pub netns: PathBuf,
    pub limits: ResourceLimits,
    /// Relative to the cgroup roots, like `/berth/<id>`.
    pub cgroups_path: String,
    /// Host files bind-mounted read-only over /etc/resolv.conf, /etc/hosts, /etc/hostname.
    pub etc_files: Vec<(PathBuf, &'static str)>,
    /// Host directories mounted into the container: uploaded code, volumes.
    pub binds: Vec<BindMount>,
    /// Apply the default seccomp profile (see `seccomp`).
    pub seccomp: bool,
    /// Mount the root filesystem read-only and a tmpfs at `/tmp`, its pages charged to the
    /// pod's memory and capped at its memory limit.
    pub read_only_rootfs: bool,
    /// Run in the pod's user namespace (pinned at the path), its ids mapped to the range.
    pub user_namespace: Option<(crate::IdRange, PathBuf)>,
    /// The mounted root filesystem: `rootfs` in the bundle, or an absolute path.
    pub rootfs: PathBuf,
}

/// A host directory bind-mounted into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    /// An absolute path in the container; the runtime creates it if missing, and resolves it
    /// inside the root filesystem (a symlink in the image cannot send it elsewhere).
    pub destination: String,
    pub read_only: bool,
}

/// The capabilities a pod keeps: Podman's default set (no NET_RAW, no SYS_ADMIN).
const CAPABILITIES: [Capability; 11] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::NetBindService,
    Capability::Setfcap,
    Capability::Setgid,
    Capability::Setpcap,
    Capability::Setuid,
    Capability::SysChroot,
];

/// Open files: as many as the server itself may have. Raising the hard limit needs
/// CAP_SYS_RESOURCE, which sandboxed hosts withhold, and lower (the crate's 1024) breaks
/// real apps.
fn nofile_limit() -> Result<PosixRlimit, oci_spec::OciSpecError> {
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .unwrap_or((1024, 1024));
    let limit = hard.min(1_048_576);
    PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .hard(limit)
        .soft(limit)
        .build()
}

pub fn build_spec(run: &RunSpec) -> Result<Spec, RuntimeError> {
    let err = |e: oci_spec::OciSpecError| RuntimeError::Spec(e.to_string());
    let caps: std::collections::HashSet<Capability> = CAPABILITIES.into_iter().collect();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        // Unset fields would take the crate's defaults (AUDIT_WRITE, ...), which lie outside
        // the bounding set and make the runtime fail.
        .inheritable(std::collections::HashSet::<Capability>::new())
        .ambient(std::collections::HashSet::<Capability>::new())
        .build()
        .map_err(err)?;
    let user = UserBuilder::default()
        .uid(run.uid)
        .gid(run.gid)
        .additional_gids(run.additional_gids.clone())
        .build()
        .map_err(err)?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(run.args.clone())
        .env(run.env.clone())
        .cwd(run.cwd.clone())
        .user(user)
        .capabilities(capabilities)
        .no_new_privileges(true)
        .rlimits(vec![nofile_limit().map_err(err)?])
        .build()
        .map_err(err)?;

    let quota = (run.limits.cpu_millis * CPU_PERIOD_US / 1000) as i64;
    let memory_bytes = (run.limits.memory_mib * 1024 * 1024) as i64;
    let resources = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(memory_bytes)
                // No swap beyond the limit: a hog is killed, not slowed down.
                .swap(memory_bytes)
                .build()
                .map_err(err)?,
        )
        .cpu(
            LinuxCpuBuilder::default()
                .quota(quota)
                .period(CPU_PERIOD_US)
                .build()
                .map_err(err)?,
        )
        .pids(
            LinuxPidsBuilder::default()
                .limit(run.limits.pids)
                .build()
                .map_err(err)?,
        )
        .build()
        .map_err(err)?;

    let namespaces = [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Cgroup,
    ]
    .into_iter()
    .map(|typ| LinuxNamespaceBuilder::default().typ(typ).build())
    .chain(std::iter::once(
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::Network)
            .path(run.netns.clone())
            .build(),
    ))
    .chain(run.user_namespace.as_ref().map(|(_, path)| {
        LinuxNamespaceBuilder::default()
            .typ(LinuxNamespaceType::User)
            .path(path.clone())
            .build()
    }))
    .collect::<Result<Vec<_>, _>>()
    .map_err(err)?;

    let defaults = Spec::default();
    let linux_defaults = defaults.linux().clone().unwrap_or_default();
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources)
        .cgroups_path(PathBuf::from(&run.cgroups_path))
        .masked_paths(linux_defaults.masked_paths().clone().unwrap_or_default())
        .readonly_paths(linux_defaults.readonly_paths().clone().unwrap_or_default())
        .build()
        .map_err(err)?;
    if run.seccomp {
        linux.set_seccomp(Some(crate::seccomp::default_profile().map_err(err)?));
    }
    if let Some((range, _)) = run.user_namespace {
        let mapping = LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(range.host_start)
            .size(range.size)
            .build()
            .map_err(err)?;
        linux.set_uid_mappings(Some(vec![mapping]));
        linux.set_gid_mappings(Some(vec![mapping]));
    }

    let mut mounts: Vec<Mount> = defaults.mounts().clone().unwrap_or_default();
    for (source, destination) in &run.etc_files {
        mounts.push(
            MountBuilder::default()
                .destination(PathBuf::from(destination))
                .typ("bind")
                .source(source.clone())
                .options(vec!["rbind".to_string(), "ro".to_string()])
                .build()
                .map_err(err)?,
        );
    }

    for bind in &run.binds {
        let access = if bind.read_only { "ro" } else { "rw" };
        mounts.push(
            MountBuilder::default()
                .destination(PathBuf::from(&bind.destination))
                .typ("bind")
                .source(bind.source.clone())
                .options(
                    ["rbind", access, "nosuid", "nodev"]
                        .map(String::from)
                        .to_vec(),
                )
                .build()
                .map_err(err)?,
        );
    }

    if run.read_only_rootfs {
        mounts.push(
            MountBuilder::default()
                .destination(PathBuf::from("/tmp"))
                .typ("tmpfs")
                .source(PathBuf::from("tmpfs"))
                .options(
                    [
                        "nosuid".to_string(),
                        "nodev".to_string(),
                        "mode=1777".to_string(),
                        format!("size={}m", run.limits.memory_mib),
                    ]
                    .to_vec(),
                )
                .build()
                .map_err(err)?,
        );
    }

    let mut spec = Spec::default();
    spec.set_hostname(Some(run.hostname.clone()))
        .set_process(Some(process))
        .set_root(Some(
            RootBuilder::default()
                .path(run.rootfs.clone())
                .readonly(run.read_only_rootfs)
                .build()
                .map_err(err)?,
        ))
        .set_mounts(Some(mounts))
        .set_linux(Some(linux))
        .set_annotations(None);
    Ok(spec)
}

/// Writes `config.json` into the bundle directory (whose `rootfs` the caller mounted).
pub fn write_bundle(bundle: &Path, spec: &Spec) -> Result<(), RuntimeError> {
    let path = bundle.join("config.json");
    let text = serde_json::to_vec(spec).map_err(|e| RuntimeError::Spec(e.to_string()))?;
    std::fs::write(&path, text).map_err(io_err(&path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> RunSpec {
        RunSpec {
            id: "pod-x-1".into(),
            args: vec!["/bin/app".into(), "serve".into()],
            env: vec!["PATH=/bin".into(), "A=b".into()],
            cwd: "/work".into(),
            uid: 1000,
            gid: 100,
            additional_gids: vec![],
            hostname: "pod-x".into(),
            netns: "/run/netns/berth-x".into(),
            limits: ResourceLimits {
                cpu_millis: 1500,
                memory_mib: 256,
                pids: 4096,
            },
            cgroups_path: "/berth/pod-x-1".into(),
            etc_files: vec![("/state/x/resolv.conf".into(), "/etc/resolv.conf")],
            binds: vec![BindMount {
                source: "/state/code/abc".into(),
                destination: "/mnt/code".into(),
                read_only: true,
            }],
            seccomp: true,
            read_only_rootfs: false,
            user_namespace: None,
            rootfs: "rootfs".into(),
        }
    }

    #[test]
    fn a_user_namespace_joins_the_pinned_one_with_its_mappings() {
        let plain = serde_json::to_value(build_spec(&run()).expect("builds")).expect("json");
        assert!(plain["linux"]["uidMappings"].is_null());
        let mut mapped = run();
        mapped.user_namespace = Some((
            crate::IdRange {
                host_start: 1 << 30,
                size: 65536,
            },
            "/state/x/userns".into(),
        ));
        mapped.rootfs = "/run/berth/pods/pod-x-1".into();
        let json = serde_json::to_value(build_spec(&mapped).expect("builds")).expect("json");
        let ns = json["linux"]["namespaces"].as_array().expect("namespaces");
        assert!(ns
            .iter()
            .any(|n| n["type"] == "user" && n["path"] == "/state/x/userns"));
        for map in ["uidMappings", "gidMappings"] {
            assert_eq!(
                json["linux"][map],
                serde_json::json!([{"containerID": 0, "hostID": 1u32 << 30, "size": 65536}])
            );
        }
        assert_eq!(json["root"]["path"], "/run/berth/pods/pod-x-1");
    }

    #[test]
    fn binds_are_mounted_without_devices_or_setuid() {
        let spec = build_spec(&run()).expect("builds");
        let json = serde_json::to_value(&spec).expect("json");
        let code = json["mounts"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["destination"] == "/mnt/code"))
            .expect("the code mount");
        assert_eq!(code["source"], "/state/code/abc");
        assert_eq!(
            code["options"],
            serde_json::json!(["rbind", "ro", "nosuid", "nodev"])
        );
    }

    #[test]
    fn limits_and_namespaces_land_in_the_spec() {
        let spec = build_spec(&run()).expect("builds");
        let json = serde_json::to_value(&spec).expect("json");
        let res = &json["linux"]["resources"];
        assert_eq!(res["cpu"]["quota"], 150_000);
        assert_eq!(res["cpu"]["period"], 100_000);
        assert_eq!(res["memory"]["limit"], 256 * 1024 * 1024);
        assert_eq!(res["pids"]["limit"], 4096);
        assert_eq!(json["linux"]["cgroupsPath"], "/berth/pod-x-1");
        let ns = json["linux"]["namespaces"].as_array().expect("namespaces");
        assert!(ns
            .iter()
            .any(|n| n["type"] == "network" && n["path"] == "/run/netns/berth-x"));
        assert!(ns.iter().any(|n| n["type"] == "pid"));
        assert_eq!(json["process"]["args"][1], "serve");
        assert_eq!(json["process"]["user"]["uid"], 1000);
        assert_eq!(json["process"]["cwd"], "/work");
        assert_eq!(json["process"]["noNewPrivileges"], true);
        assert_eq!(json["linux"]["seccomp"]["defaultErrnoRet"], 1);
        let caps = json["process"]["capabilities"]["bounding"]
            .as_array()
            .expect("caps");
        assert!(!caps
            .iter()
            .any(|c| c == "CAP_SYS_ADMIN" || c == "CAP_NET_RAW"));
        assert_eq!(
            json["process"]["capabilities"]["ambient"],
            serde_json::json!([])
        );
        let mounts = json["mounts"].as_array().expect("mounts");
        assert!(mounts
            .iter()
            .any(|m| m["destination"] == "/etc/resolv.conf"));
        assert!(mounts.iter().any(|m| m["destination"] == "/proc"));
    }
}
