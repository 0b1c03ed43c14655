//! `berth shim` (hidden): the per-container monitor the server launches.

use berth_runtime::shim::{self, ShimConfig};

use crate::cli::ShimArgs;

pub fn run(args: &ShimArgs) -> i32 {
    let runtime = match args.runtime.parse() {
        Ok(r) => r,
        Err(e) => {
            println!("failed {e}");
            return 2;
        }
    };
    shim::run(&ShimConfig {
        id: args.id.clone(),
        bundle: args.bundle.clone(),
        dir: args.dir.clone(),
        runtime,
        runtime_binary: args.runtime_binary.clone(),
        runtime_root: args.runtime_root.clone(),
        cgroups_path: args.cgroup.clone(),
    })
}
