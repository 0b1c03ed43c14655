//! A state directory that fills up: a small ext4 filesystem, loop-mounted as a test server's
//! state directory. A pull that does not fit and a create on a full disk each fail with a
//! clear reason, leave no partial blob or layer, are recorded as FAILED, and the server
//! works again once there is room.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::testapp_spec;
use crate::common::client::Api;
use crate::common::harness::{finish_own_server, own_server_dir, Env};
use crate::common::images::{no_partial_files, Image, LayerBuilder};
use crate::common::server::{state_dir_in, PodNetwork, Server};
use crate::common::{command_output, indent, Res};
use crate::ensure;

const NETWORK: PodNetwork = PodNetwork {
    bridge: "berthtest12",
    subnet_v4: "10.227.0.0/16",
    subnet_v6: None,
};

/// The filesystem the state directory gets.
const FS_MIB: u64 = 96;
/// A layer of random (incompressible) bytes that cannot fit twice (blob and unpacked).
const BIG_LAYER_MIB: usize = 64;
const FAIL_WITHIN: Duration = Duration::from_secs(120);

pub fn pull_and_create_on_a_full_disk_fail_cleanly(env: &Env) -> Res<()> {
    let dir = own_server_dir(env, &NETWORK, "diskfull")?;
    let state = state_dir_in(&dir);
    let image_file = dir.join("state.ext4");
    mount_small_fs(&image_file, &state)?;
    let outcome = Server::start_with(&dir, &env.registry.host(), NETWORK).and_then(|server| {
        let api = Api::new(&server)?;
        let outcome = full_disk(env, &server, &api);
        finish_own_server(&server, &api, &NETWORK, outcome)
    });
    let unmounted = command_output("umount", &[&state.to_string_lossy()]).map(|_| ());
    let _ = std::fs::remove_file(&image_file);
    outcome.and(unmounted)
}

fn mount_small_fs(image: &Path, at: &Path) -> Res<()> {
    let file = std::fs::File::create(image).map_err(|e| format!("create {image:?}: {e}"))?;
    file.set_len(FS_MIB << 20)
        .map_err(|e| format!("size {image:?}: {e}"))?;
    drop(file);
    command_output(
        "mkfs.ext4",
        &["-q", "-F", "-m", "0", &image.to_string_lossy()],
    )?;
    std::fs::create_dir_all(at).map_err(|e| format!("create {at:?}: {e}"))?;
    command_output(
        "mount",
        &[
            "-o",
            "loop",
            &image.to_string_lossy(),
            &at.to_string_lossy(),
        ],
    )?;
    Ok(())
}

fn full_disk(env: &Env, server: &Server, api: &Api) -> Res<()> {
    let store = server.state_dir.join("images");

    // A pull that does not fit.
    env.registry.push("too-big", "latest", &big_image()?)?;
    let big = format!("{}/too-big:latest", env.registry.host());
    let reason = api.create_failing(&json!({"image": big, "ports": [8080]}), FAIL_WITHIN)?;
    ensure!(
        reason.contains("No space left on device"),
        "a pull that fills the disk should say so; the reason is: {reason}"
    );
    no_partial_files(&store)?;

    // The room the failed pull took is back: a small image pulls and runs.
    let pod = api.launch(testapp_spec(env, &["http", "8080"]))?;
    api.wait_running(&pod.id)?;
    pod.wait_http_ok(8080, "/")?;
    drop(pod);

    // A create on a full disk whose image must be pulled: it fails and is recorded FAILED
    // while the disk is still full. (A create whose image is here needs only a few KiB,
    // which ext4 still finds on a "full" filesystem: that one runs.)
    let filler = server.state_dir.join("filler");
    fill(&filler)?;
    let spec = json!({"image": env.images.zstd, "ports": [8080]});
    let reason = api.create_failing(&spec, FAIL_WITHIN);
    let listed = api.list(true);
    let _ = std::fs::remove_file(&filler);
    let reason = reason?;
    ensure!(
        reason.contains("No space left on device"),
        "a create on a full disk should say so; the reason is: {reason}"
    );
    no_partial_files(&store)?;
    let listed = listed?;
    ensure!(
        listed.iter().all(|c| c.status.is_terminal()),
        "on a full disk every container should have been recorded as ended:\n{}",
        indent(
            &listed
                .iter()
                .map(|c| format!("{} {}", c.id, c.status))
                .collect::<Vec<_>>()
                .join("\n")
        )
    );

    // With room again, the same create works.
    let pod = api.launch(spec)?;
    api.wait_running(&pod.id)?;
    pod.wait_http_ok(8080, "/")?;
    Ok(())
}

/// Writes `path` until the filesystem is full.
fn fill(path: &PathBuf) -> Res<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path).map_err(|e| format!("create {path:?}: {e}"))?;
    let block = vec![0x5au8; 1 << 20];
    loop {
        match file.write(&block) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return Ok(()),
            Err(e) => return Err(format!("fill {path:?}: {e}")),
        }
    }
}

/// busybox-free: one layer of random bytes, so gzip cannot shrink it.
fn big_image() -> Res<Image> {
    let mut data = vec![0u8; BIG_LAYER_MIB << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in data.chunks_mut(8) {
        // xorshift64: fast, and incompressible enough for gzip.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let mut layer = LayerBuilder::new();
    layer.file("/big.bin", &data, 0o644)?;
    Image::new(&[&layer.finish()?], json!({"Cmd": ["/big.bin"]}))
}
