//! `testapp attack`: what hostile code in a pod would try first to reach the host, one line
//! each: `attack NAME: blocked (<how>)` or `attack NAME: ALLOWED (<what happened>)`, then
//! `seccomp: <mode from /proc/self/status>`. Each attempt is harmless if it succeeds in a
//! correctly isolated pod and does nothing to the host if it fails, so the suite can run
//! them all and read which ones got through.

use std::ffi::CString;
use std::io::{self, Read, Write};

type Outcome = Result<String, String>;
type Attack = (&'static str, fn() -> Outcome);

/// A libc call's result: `-1` is blocked with errno, anything else got through.
fn call(result: libc::c_long) -> Outcome {
    if result == -1 {
        Err(io::Error::last_os_error().to_string())
    } else {
        Ok(format!("returned {result}"))
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

/// Runs every attack and prints the outcomes; exits 0 unless one got through.
pub fn run() -> bool {
    let attacks: [Attack; 15] = [
        ("mount", mount),
        ("add_key", add_key),
        ("init_module", init_module),
        ("clock_settime", clock_settime),
        ("sethostname", sethostname),
        ("mknod_device", mknod_device),
        ("reboot", reboot),
        ("io_uring_setup", io_uring_setup),
        ("bpf", bpf),
        ("write_core_pattern", write_core_pattern),
        ("read_kcore", read_kcore),
        ("host_block_devices", host_block_devices),
        ("see_host_processes", see_host_processes),
        ("ptrace_host_process", ptrace_host_process),
        ("unshare_mount_namespace", unshare_mount_namespace),
    ];
    let mut contained = true;
    for (name, attack) in attacks {
        match attack() {
            // "ALLOWED" means the attempt did what it asked: the pod is not contained.
            Ok(what) => {
                contained = false;
                crate::say(&format!("attack {name}: ALLOWED ({what})"));
            }
            Err(how) => crate::say(&format!("attack {name}: blocked ({how})")),
        }
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let seccomp = status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .map(str::trim)
        .unwrap_or("unknown");
    crate::say(&format!("seccomp: {seccomp}"));
    contained
}

fn mount() -> Outcome {
    let _ = std::fs::create_dir_all("/tmp/attack-mnt");
    let (src, target, fs) = (cstr("none"), cstr("/tmp/attack-mnt"), cstr("tmpfs"));
    // SAFETY: valid NUL-terminated strings and a null data pointer.
    call(unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fs.as_ptr(),
            0,
            std::ptr::null(),
        ) as _
    })
}

/// The kernel keyring is not namespaced: Docker's profile keeps pods off it.
fn add_key() -> Outcome {
    let (typ, desc, payload) = (cstr("user"), cstr("berth-attack"), b"x");
    // SAFETY: pointers to live buffers, with their lengths; -2 is the process keyring.
    call(unsafe {
        libc::syscall(
            libc::SYS_add_key,
            typ.as_ptr(),
            desc.as_ptr(),
            payload.as_ptr(),
            payload.len(),
            -2 as libc::c_long,
        )
    })
}

fn init_module() -> Outcome {
    let params = cstr("");
    // SAFETY: an empty image (length 0) and a valid parameter string.
    call(unsafe {
        libc::syscall(
            libc::SYS_init_module,
            std::ptr::null::<u8>(),
            0usize,
            params.as_ptr(),
        )
    })
}

fn clock_settime() -> Outcome {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to read the clock into and set it back from.
    unsafe {
        libc::clock_gettime(libc::CLOCK_REALTIME, &mut now);
        call(libc::clock_settime(libc::CLOCK_REALTIME, &now) as _)
    }
}

fn sethostname() -> Outcome {
    let name = b"pwned";
    // SAFETY: a live buffer and its length.
    call(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) as _ })
}

/// A character device with /dev/mem's numbers (1, 1), then a read through it: host memory,
/// if both worked.
fn mknod_device() -> Outcome {
    let path = cstr("/tmp/attack-mem");
    // SAFETY: a valid path; the device numbers are plain integers.
    let made = call(unsafe {
        libc::mknod(path.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 1)) as _
    });
    let read = made.and_then(|_| {
        let mut buf = [0u8; 16];
        match std::fs::File::open("/tmp/attack-mem").and_then(|mut f| f.read(&mut buf)) {
            Ok(n) => Ok(format!("made the node and read {n} bytes through it")),
            Err(e) => Err(format!("made the node, but reading it: {e}")),
        }
    });
    let _ = std::fs::remove_file("/tmp/attack-mem");
    read
}

/// Ctrl-Alt-Del off: a no-op for the host's state if it were ever allowed.
fn reboot() -> Outcome {
    // SAFETY: no pointers.
    call(unsafe { libc::reboot(libc::LINUX_REBOOT_CMD_CAD_OFF) as _ })
}

fn io_uring_setup() -> Outcome {
    let mut params = [0u8; 120];
    // SAFETY: a zeroed io_uring_params-sized buffer.
    let fd = call(unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) });
    if let Ok(text) = &fd {
        if let Some(n) = text.strip_prefix("returned ") {
            if let Ok(fd) = n.parse::<i32>() {
                // SAFETY: the descriptor io_uring_setup just returned.
                unsafe { libc::close(fd) };
            }
        }
    }
    fd
}

fn bpf() -> Outcome {
    let mut attr = [0u8; 128];
    // SAFETY: a zeroed attribute buffer of the size passed; command 0 is BPF_MAP_CREATE.
    call(unsafe { libc::syscall(libc::SYS_bpf, 0, attr.as_mut_ptr(), attr.len()) })
}

/// The classic escape: make the host run a program of ours when something dumps core.
fn write_core_pattern() -> Outcome {
    match std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/sys/kernel/core_pattern")
        .and_then(|mut f| f.write_all(b"|/tmp/attack-payload"))
    {
        Ok(()) => Ok("wrote it".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Host memory through /proc/kcore; masked, it reads as empty.
fn read_kcore() -> Outcome {
    let mut buf = [0u8; 64];
    match std::fs::File::open("/proc/kcore").and_then(|mut f| f.read(&mut buf)) {
        Ok(0) => Err("reads as empty".into()),
        Ok(n) => Ok(format!("read {n} bytes")),
        Err(e) => Err(e.to_string()),
    }
}

fn host_block_devices() -> Outcome {
    use std::os::unix::fs::FileTypeExt;
    let found: Vec<String> = std::fs::read_dir("/dev")
        .map_err(|e| e.to_string())?
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_block_device()).unwrap_or(false))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if found.is_empty() {
        Err("none in /dev".into())
    } else {
        Ok(format!("found {}", found.join(" ")))
    }
}

/// A pod sees its own processes only: a host process cannot even be named, let alone traced.
fn see_host_processes() -> Outcome {
    let pids = std::fs::read_dir("/proc")
        .map_err(|e| e.to_string())?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .count();
    if pids <= 3 {
        Err(format!("{pids} processes visible"))
    } else {
        Ok(format!("{pids} processes visible"))
    }
}

/// Attaches to a process of the host, named by its host pid (`BERTH_ATTACK_HOST_PID`, the
/// test's own): in the pod's pid namespace that number names nothing of the host's.
fn ptrace_host_process() -> Outcome {
    let Some(pid) = std::env::var("BERTH_ATTACK_HOST_PID")
        .ok()
        .and_then(|p| p.parse::<libc::pid_t>().ok())
    else {
        // Not tried is not blocked: reported as getting through, so the suite fails.
        return Ok("not tried: BERTH_ATTACK_HOST_PID names no host process".into());
    };
    // SAFETY: PTRACE_ATTACH takes no pointers; a successful attach is undone at once.
    let attached = call(unsafe {
        libc::ptrace(
            libc::PTRACE_ATTACH,
            pid,
            std::ptr::null_mut::<libc::c_void>(),
            0,
        )
    });
    if attached.is_ok() {
        // SAFETY: as above.
        unsafe {
            libc::ptrace(
                libc::PTRACE_DETACH,
                pid,
                std::ptr::null_mut::<libc::c_void>(),
                0,
            );
        }
    }
    attached.map(|r| format!("attached to pid {pid}: {r}"))
}

fn unshare_mount_namespace() -> Outcome {
    // SAFETY: no pointers.
    call(unsafe { libc::unshare(libc::CLONE_NEWNS) as _ })
}
