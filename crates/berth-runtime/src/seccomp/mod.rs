//! The seccomp filter of runc pods, shaped like Docker's default profile: a syscall not on
//! the list fails with EPERM (the calling program sees an error; nothing else is affected).
//! The list is the usual container allow list (`allowed.txt`) less the syscalls that need
//! `CAP_SYS_ADMIN`, which pods do not have (mount, unshare, setns, pivot_root, the new mount
//! API), and those that reach state the kernel does not namespace (the keyring, syslog,
//! reboot). `clone` may not make namespaces, and `clone3`, whose flags a filter cannot read,
//! answers ENOSYS so C libraries fall back to `clone`.
//!
//! gVisor pods do not get it: the Sentry serves their syscalls itself, and runsc applies
//! its own filter to the Sentry.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};

const ALLOWED: &str = include_str!("allowed.txt");
const EPERM: u32 = 1;
const ENOSYS: u32 = 38;
/// CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;
/// `personality` arguments Docker allows: PER_LINUX, PER_LINUX32, UNAME26 variants, query.
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// The syscalls on the allow list, in order.
pub fn allowed_syscalls() -> impl Iterator<Item = &'static str> {
    ALLOWED
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

pub fn default_profile() -> Result<LinuxSeccomp, oci_spec::OciSpecError> {
    let allow = |names: &[&str]| -> Result<LinuxSyscall, oci_spec::OciSpecError> {
        LinuxSyscallBuilder::default()
            .names(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .action(LinuxSeccompAction::ScmpActAllow)
            .build()
    };
    let mut syscalls = vec![allow(&allowed_syscalls().collect::<Vec<_>>())?];

    // clone with no namespace flag (argument 0 on every architecture but s390).
    syscalls.push(
        LinuxSyscallBuilder::default()
            .names(vec!["clone".to_string()])
            .action(LinuxSeccompAction::ScmpActAllow)
            .args(vec![LinuxSeccompArgBuilder::default()
                .index(0usize)
                .value(CLONE_NAMESPACE_FLAGS)
                .value_two(0u64)
                .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
                .build()?])
            .build()?,
    );
    // Any matching rule allows: one per personality.
    for persona in PERSONALITIES {
        syscalls.push(
            LinuxSyscallBuilder::default()
                .names(vec!["personality".to_string()])
                .action(LinuxSeccompAction::ScmpActAllow)
                .args(vec![LinuxSeccompArgBuilder::default()
                    .index(0usize)
                    .value(persona)
                    .op(LinuxSeccompOperator::ScmpCmpEq)
                    .build()?])
                .build()?,
        );
    }
    syscalls.push(
        LinuxSyscallBuilder::default()
            .names(vec!["clone3".to_string()])
            .action(LinuxSeccompAction::ScmpActErrno)
            .errno_ret(ENOSYS)
            .build()?,
    );
    if cfg!(target_arch = "x86_64") {
        syscalls.push(allow(&["arch_prctl"])?);
    }

    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(EPERM)
        .architectures(architectures())
        .syscalls(syscalls)
        .build()
}

/// The native architecture only. Docker also lists the 32-bit ones the CPU runs (x86, x32,
/// arm); leaving them out refuses the compat syscall entry points, a kernel surface pods do
/// not need (gVisor has no 32-bit support either), and makes the filter a third the size:
/// runc compiles it at every start, about 12 ms of it on the development machine.
fn architectures() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64]
    } else {
        vec![Arch::ScmpArchNative]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_denies_with_eperm_and_keeps_dangerous_calls_off_the_list() {
        let profile = default_profile().expect("builds");
        let json = serde_json::to_value(&profile).expect("json");
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(json["defaultErrnoRet"], 1);
        let allowed: Vec<&str> = allowed_syscalls().collect();
        assert!(allowed.len() > 300, "{}", allowed.len());
        for needed in [
            "read",
            "write",
            "openat",
            "execve",
            "socket",
            "futex",
            "epoll_wait",
        ] {
            assert!(allowed.contains(&needed), "{needed} must be allowed");
        }
        for refused in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "pivot_root",
            "keyctl",
            "add_key",
            "reboot",
            "init_module",
            "kexec_load",
            "bpf",
            "userfaultfd",
            "io_uring_setup",
            "open_by_handle_at",
        ] {
            assert!(!allowed.contains(&refused), "{refused} must not be allowed");
        }
        let clone = json["syscalls"]
            .as_array()
            .and_then(|s| {
                s.iter()
                    .find(|r| r["names"] == serde_json::json!(["clone"]))
            })
            .expect("a clone rule");
        assert_eq!(clone["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        assert_eq!(clone["args"][0]["value"], CLONE_NAMESPACE_FLAGS);
    }
}
