//! Hostile layers must not write outside the container's rootfs.
//!
//! Each image carries the testapp, so it could run: the container may end FAILED (the layer
//! was refused) or RUNNING (the entry was neutralised). Either way nothing may appear on the
//! host.

use std::os::unix::fs::MetadataExt;

use berth_api::ContainerStatus;
use serde_json::json;

use crate::common::harness::Env;
use crate::common::images::HostileImage;
use crate::common::{timeouts, Res};
use crate::ensure;

fn image<'a>(env: &'a Env, name: &str) -> Res<&'a HostileImage> {
    let suffix = format!("/{name}:latest");
    env.images
        .hostile
        .iter()
        .find(|h| h.reference.ends_with(&suffix))
        .ok_or_else(|| format!("setup built no hostile image {name}"))
}

fn host_untouched(image: &HostileImage) -> Res<()> {
    for path in &image.must_not_exist {
        ensure!(
            std::fs::symlink_metadata(path).is_err(),
            "ESCAPE: pulling {} ({}) created {} on the host",
            image.reference,
            image.what,
            path.display()
        );
    }
    for path in &image.must_stay_unlinked {
        let meta =
            std::fs::metadata(path).map_err(|e| format!("host file {}: {e}", path.display()))?;
        ensure!(
            meta.nlink() == 1,
            "ESCAPE: pulling {} ({}) hard-linked the host file {} (link count {})",
            image.reference,
            image.what,
            path.display(),
            meta.nlink()
        );
    }
    Ok(())
}

fn run_hostile(env: &Env, name: &str) -> Res<()> {
    let api = &env.api;
    let image = image(env, name)?;
    host_untouched(image)?;
    let pod = api.launch(json!({"image": image.reference, "ports": [8080]}))?;
    let c = api.wait_for(&pod.id, "RUNNING or FAILED", timeouts::START, |c| {
        c.status == ContainerStatus::Running || c.status.is_terminal()
    });
    // The host check comes first: an escape matters more than how the container ended.
    host_untouched(image)?;
    let c = c?;
    match c.status {
        ContainerStatus::Failed => {
            ensure!(
                c.reason.as_deref().is_some_and(|r| !r.trim().is_empty()),
                "{} FAILED without a reason",
                pod.id
            );
        }
        ContainerStatus::Running => {
            // Neutralised: the app runs; the host must still be untouched after it stops.
            drop(pod);
            host_untouched(image)?;
        }
        other => {
            return Err(format!(
                "the hostile image {} ({}) ended {other}, expected FAILED or RUNNING\n{}",
                image.reference,
                image.what,
                api.describe(&c.id)
            ))
        }
    }
    Ok(())
}

pub fn dotdot_entry(env: &Env) -> Res<()> {
    run_hostile(env, "evil-dotdot")
}

pub fn symlink_to_etc(env: &Env) -> Res<()> {
    run_hostile(env, "evil-symlink")
}

pub fn symlink_climb_across_layers(env: &Env) -> Res<()> {
    run_hostile(env, "evil-symlink-rel")
}

pub fn hardlink_to_host_file(env: &Env) -> Res<()> {
    run_hostile(env, "evil-hardlink")
}
