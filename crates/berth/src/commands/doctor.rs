//! `berth doctor`: what this host has of what berth needs, one line per check, each with
//! what to do when it fails. Nothing is changed on the host.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use crate::cli::DoctorArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Pass,
    /// Something optional is missing, or something may bite later.
    Warn,
    Fail,
}

#[derive(Debug)]
struct Check {
    name: &'static str,
    verdict: Verdict,
    detail: String,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Self::new(name, Verdict::Pass, detail)
    }
    fn warn(name: &'static str, detail: impl Into<String>) -> Self {
        Self::new(name, Verdict::Warn, detail)
    }
    fn fail(name: &'static str, detail: impl Into<String>) -> Self {
        Self::new(name, Verdict::Fail, detail)
    }
    fn new(name: &'static str, verdict: Verdict, detail: impl Into<String>) -> Self {
        Self {
            name,
            verdict,
            detail: detail.into(),
        }
    }
}

/// Free space below this fails the disk check; below `DISK_WARN` it warns.
const DISK_FAIL: u64 = 1 << 30;
const DISK_WARN: u64 = 5 << 30;

pub fn run(args: DoctorArgs) -> Result<()> {
    let checks = vec![
        root(),
        runtime("runc", "runc", true),
        runtime("gVisor", "runsc", false),
        cni_plugins(&args.network.cni_bin_dir),
        cgroups(Path::new("/sys/fs/cgroup")),
        overlayfs(),
        iptables("iptables"),
        iptables("ip6tables"),
        subnets(&args),
        user_namespaces(),
        dns(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()),
        disk(&args.state_dir),
        init_binary(),
    ];
    let mut failed = 0;
    for check in &checks {
        let verdict = match check.verdict {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        };
        failed += usize::from(check.verdict == Verdict::Fail);
        println!("{verdict}  {:<16} {}", check.name, check.detail);
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} checks failed: fix what they say, then run berth doctor again",
        checks.len()
    );
    Ok(())
}

fn root() -> Check {
    if nix::unistd::geteuid().is_root() {
        Check::pass("root", "running as root")
    } else {
        Check::fail(
            "root",
            "berth server runs containers and must run as root (sudo berth doctor)",
        )
    }
}

/// The first line a program prints for `--version`, if it runs.
fn version(program: &str) -> Option<String> {
    let out = Command::new(program).arg("--version").output().ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string()
    })
}

fn runtime(name: &'static str, program: &str, required: bool) -> Check {
    match version(program) {
        Some(v) => Check::pass(name, v),
        None if required => Check::fail(
            name,
            format!("{program} does not run: apt install {program}"),
        ),
        None => Check::warn(
            name,
            format!(
                "{program} not found: pods with runtime gvisor will fail (apt install {program})"
            ),
        ),
    }
}

fn cni_plugins(dir: &Path) -> Check {
    use std::os::unix::fs::PermissionsExt;
    let missing: Vec<&str> = berth_net::CNI_PLUGINS
        .iter()
        .copied()
        .filter(|plugin| {
            std::fs::metadata(dir.join(plugin))
                .map(|m| !m.is_file() || m.permissions().mode() & 0o111 == 0)
                .unwrap_or(true)
        })
        .collect();
    if missing.is_empty() {
        Check::pass(
            "CNI plugins",
            format!("{} in {}", berth_net::CNI_PLUGINS.join(", "), dir.display()),
        )
    } else {
        Check::fail(
            "CNI plugins",
            format!(
                "{} missing from {} (apt install containernetworking-plugins, or --cni-bin-dir)",
                missing.join(", "),
                dir.display()
            ),
        )
    }
}

/// Pods need the memory, pids and cpu controllers, in cgroup v2 or v1 (hybrid hosts too).
fn cgroups(root: &Path) -> Check {
    let v2 = std::fs::read_to_string(root.join("cgroup.controllers")).ok();
    let unified = std::fs::read_to_string(root.join("unified/cgroup.controllers")).ok();
    let have = |controller: &str| match &v2 {
        Some(list) => list.split_whitespace().any(|c| c == controller),
        None => root.join(controller).is_dir(),
    };
    let missing: Vec<&str> = ["memory", "pids", "cpu"]
        .into_iter()
        .filter(|c| !have(c))
        .collect();
    let layout = match (&v2, &unified) {
        (Some(_), _) => "cgroup v2",
        (None, Some(_)) => "hybrid (v1 controllers, v2 beside them)",
        (None, None) => "cgroup v1",
    };
    if !root.is_dir() {
        Check::fail("cgroups", format!("{} is not mounted", root.display()))
    } else if missing.is_empty() {
        Check::pass("cgroups", format!("{layout}: memory, pids and cpu"))
    } else {
        Check::fail(
            "cgroups",
            format!(
                "{layout} without the {} controller(s): enable them on the kernel command line",
                missing.join(", ")
            ),
        )
    }
}

fn overlayfs() -> Check {
    let listed = std::fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"));
    if listed {
        Check::pass("overlayfs", "the kernel has overlay")
    } else if Path::new("/sys/module/overlay").exists() || modprobe_dry_run("overlay") {
        Check::warn(
            "overlayfs",
            "overlay is a module not loaded yet (modprobe overlay; berth's first pod loads it)",
        )
    } else {
        Check::fail("overlayfs", "this kernel has no overlay filesystem")
    }
}

fn modprobe_dry_run(module: &str) -> bool {
    Command::new("modprobe")
        .args(["-n", module])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn iptables(program: &'static str) -> Check {
    let out = Command::new(program)
        .args(["-w", "-n", "-L", "INPUT"])
        .output();
    match out {
        Ok(out) if out.status.success() => {
            Check::pass(program, version(program).unwrap_or_else(|| "works".into()))
        }
        Ok(out) => Check::fail(
            program,
            format!(
                "{program} -L fails: {} (as root, with the ip_tables/ip6_tables modules)",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ),
        Err(_) => Check::fail(
            program,
            format!("{program} not found: apt install iptables"),
        ),
    }
}

fn subnets(args: &DoctorArgs) -> Check {
    let config = match args.network.config(PathBuf::new()) {
        Ok(config) => config,
        Err(e) => return Check::fail("pod subnets", e.to_string()),
    };
    let subnets = std::iter::once(config.subnet_v4.to_string())
        .chain(config.subnet_v6.map(|s| s.to_string()))
        .collect::<Vec<_>>()
        .join(" and ");
    match berth_net::check_subnets(&config) {
        Ok(()) => Check::pass(
            "pod subnets",
            format!("{subnets} clear of the host's routes"),
        ),
        Err(e) => Check::fail("pod subnets", e.to_string()),
    }
}

fn user_namespaces() -> Check {
    let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok());
    match max {
        Some(n) if n > 0 => Check::pass("user namespaces", format!("up to {n}")),
        _ => Check::warn(
            "user namespaces",
            "off: runc pods run without a user namespace of their own \
             (sysctl user.max_user_namespaces=15000)",
        ),
    }
}

/// Pods get the host's resolvers minus loopback ones (a local stub is not reachable from a
/// pod's namespace).
fn dns(resolv_conf: &str) -> Check {
    let servers: Vec<std::net::IpAddr> = resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse().ok())
        .collect();
    let usable: Vec<String> = servers
        .iter()
        .filter(|ip| !ip.is_loopback())
        .map(ToString::to_string)
        .collect();
    if !usable.is_empty() {
        Check::pass("DNS", format!("pods resolve through {}", usable.join(", ")))
    } else if servers.is_empty() {
        Check::warn(
            "DNS",
            "/etc/resolv.conf names no resolver: pods get 8.8.8.8 (or give --dns IP)",
        )
    } else {
        Check::warn(
            "DNS",
            "the host's only resolvers are on loopback, which pods cannot reach: they get \
             8.8.8.8 (or give --dns IP)",
        )
    }
}

fn disk(state_dir: &Path) -> Check {
    // The state directory may not exist before the first start: its filesystem is the one
    // of its nearest existing parent.
    let existing = state_dir
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    match nix::sys::statvfs::statvfs(existing) {
        Ok(stat) => {
            let free = stat.blocks_available() * stat.fragment_size();
            disk_verdict(state_dir, free)
        }
        Err(e) => Check::fail("free disk", format!("{}: {e}", existing.display())),
    }
}

fn disk_verdict(state_dir: &Path, free: u64) -> Check {
    let text = format!(
        "{:.1} GiB free for {}",
        free as f64 / (1u64 << 30) as f64,
        state_dir.display()
    );
    if free < DISK_FAIL {
        Check::fail(
            "free disk",
            format!("{text}: pulls and creates will fail (berth image prune, or free space)"),
        )
    } else if free < DISK_WARN {
        Check::warn("free disk", format!("{text}: images need room to unpack"))
    } else {
        Check::pass("free disk", text)
    }
}

fn init_binary() -> Check {
    match ["/usr/bin/tini-static", "/usr/libexec/podman/catatonit"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
    {
        Some(path) => Check::pass("pod init", path),
        None => Check::warn(
            "pod init",
            "no static init: pods run without one as PID 1 (apt install tini)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_resolvers_do_not_count() {
        assert_eq!(
            dns("nameserver 127.0.0.53\noptions edns0\n").verdict,
            Verdict::Warn
        );
        assert_eq!(dns("").verdict, Verdict::Warn);
        let check = dns("# comment\nnameserver 127.0.0.1\nnameserver 10.0.0.2\n");
        assert_eq!(check.verdict, Verdict::Pass);
        assert!(check.detail.contains("10.0.0.2") && !check.detail.contains("127.0.0.1"));
    }

    #[test]
    fn disk_thresholds() {
        let dir = Path::new("/var/lib/berth");
        assert_eq!(disk_verdict(dir, 100 << 20).verdict, Verdict::Fail);
        assert_eq!(disk_verdict(dir, 2 << 30).verdict, Verdict::Warn);
        assert_eq!(disk_verdict(dir, 50 << 30).verdict, Verdict::Pass);
    }

    #[test]
    fn missing_plugins_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let check = cni_plugins(dir.path());
        assert_eq!(check.verdict, Verdict::Fail);
        assert!(
            check.detail.contains("bridge, host-local, loopback"),
            "{}",
            check.detail
        );
    }

    #[test]
    fn cgroup_v2_controllers_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("cgroup.controllers"),
            "cpu io memory pids\n",
        )
        .expect("write");
        assert_eq!(cgroups(dir.path()).verdict, Verdict::Pass);
        std::fs::write(dir.path().join("cgroup.controllers"), "cpu io\n").expect("write");
        let check = cgroups(dir.path());
        assert_eq!(check.verdict, Verdict::Fail);
        assert!(check.detail.contains("memory, pids"), "{}", check.detail);
    }
}
