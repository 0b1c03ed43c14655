//! `berth-shim`: the monitor `berth server` starts for each container (see
//! `berth_runtime::shim`). A binary of its own rather than a subcommand of `berth`: it
//! links only what a shim does, uses the system allocator and one thread, so it starts in
//! a few milliseconds and each one left running holds well under 1 MiB of its own memory.

use berth_runtime::shim::{self, ShimConfig};

fn main() {
    close_inherited_fds();
    let config = match ShimConfig::from_args(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(e) => {
            // The server reads this line; a person running the binary by hand reads it too.
            println!("failed berth-shim is started by berth server only: {e}");
            std::process::exit(2);
        }
    };
    std::process::exit(shim::run(&config));
}

/// Closes every descriptor beyond stdin, stdout and stderr: whatever the server's own parent
/// left open without close-on-exec (a shell's pipe, say) would otherwise be held for the
/// pod's whole life, and a reader waiting for that pipe's end would wait as long.
fn close_inherited_fds() {
    // SAFETY: close_range takes two numbers and flags and touches no memory; nothing in
    // this process uses a descriptor above 2 yet.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
    }
}
